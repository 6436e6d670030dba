"""Targets on the command line become an inventory, or one clear line."""

from __future__ import annotations

import pytest

from shuttle import targets
from shuttle.errors import BadInput


@pytest.mark.parametrize(
    ("text", "host", "user", "port", "name"),
    [
        ("emr.example.org", "emr.example.org", "root", 22, "emr.example.org"),
        ("admin@10.0.0.5:2222", "10.0.0.5", "admin", 2222, "10.0.0.5-2222"),
        ("root@[2001:db8::5]:22", "2001:db8::5", "root", 22, "2001:db8::5"),
    ],
)
def test_a_target_is_parsed(text: str, host: str, user: str, port: int, name: str) -> None:
    target = targets.parse(text)
    assert (target.host, target.user, target.port, target.name) == (host, user, port, name)


@pytest.mark.parametrize("text", ["root@@host", "root@emr.example.org:99999", "root@[fe80::zz]", "1.2.3", "-host"])
def test_a_bad_target_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(BadInput) as problem:
        targets.parse(text)
    assert f"target {text!r}" in str(problem.value) and "\n" not in str(problem.value)


def test_no_target_is_this_host_over_a_local_connection() -> None:
    assert targets.inventory_for([]) == {
        "all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": "auto_silent"}}}
    }


def test_a_target_given_twice_is_refused() -> None:
    with pytest.raises(BadInput, match="given twice"):
        targets.inventory_for(["a.example.org", "root@a.example.org"])
