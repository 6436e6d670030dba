"""The host layout is declared once: no role, playbook, runner module or agent module repeats a value of it.

Every path and distinctive name in playbooks/group_vars/all/layout.yml is looked for, as a whole token, in
every file Shuttle ships except that one and the documentation (which shows the default layout to readers).
Service names (db, app, proxy) are too common a word to grep for; the project name is looked for in the
forms Docker gives it (`project=NAME`, `-p NAME`, `NAME_<volume>`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.conftest import ROOT, wiring_layout

WIRING = ROOT / "playbooks/group_vars/all/layout.yml"
SHIPPED = ["roles", "playbooks", "runner", "inventories", "molecule"]


def shipped_files() -> list[Path]:
    found = []
    for top in SHIPPED:
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and path != WIRING and path.suffix != ".md" and "__pycache__" not in path.parts:
                found.append(path)
    return found


def values() -> list[str]:
    layout = wiring_layout()
    found = [value for value in layout.values() if isinstance(value, str) and value.startswith("/")]
    for key in ("secrets", "units", "volumes"):
        found += list(layout[key].values())
    return found


def token(value: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w./-]){re.escape(value)}(?![\w-])")


FILES = {path: path.read_text(errors="replace") for path in shipped_files()}


@pytest.mark.parametrize("value", values())
def test_a_layout_value_is_written_only_in_the_wiring_file(value: str) -> None:
    pattern = token(value)
    repeated = [str(path.relative_to(ROOT)) for path, text in FILES.items() if pattern.search(text)]
    assert repeated == [], f"{value} is declared in layout.yml and repeated in {repeated}"


def test_the_project_name_is_written_only_in_the_wiring_file() -> None:
    project = wiring_layout()["project"]
    forms = re.compile(rf"project={project}\b|-p {project}\b|\b{project}_[a-z]+-[a-z]+\b")
    repeated = [str(path.relative_to(ROOT)) for path, text in FILES.items() if forms.search(text)]
    assert repeated == []


def test_the_check_finds_a_repeated_value() -> None:
    """The grep itself works: the wiring file holds every value it looks for."""
    text = WIRING.read_text()
    assert all(token(value).search(text) for value in values())
