"""Every role's defaults/main.yml and its meta/argument_specs.yml say the same: the same names, the same values.

A default that is not documented, a documented option with no default (and not required), or a default
whose value differs from the one documented fails here. Options of other entry points (tasks_from) must be
required or have the same default in defaults/main.yml.
"""

from __future__ import annotations

import pytest
import yaml

from tests.unit.conftest import ROLES

ROLE_NAMES = sorted(path.name for path in ROLES.iterdir() if (path / "meta/argument_specs.yml").is_file())


def load(role: str) -> tuple[dict, dict]:
    defaults = yaml.safe_load((ROLES / role / "defaults/main.yml").read_text()) or {}
    specs = yaml.safe_load((ROLES / role / "meta/argument_specs.yml").read_text())["argument_specs"]
    return defaults, specs


def test_every_role_documents_its_variables() -> None:
    assert sorted(path.name for path in ROLES.iterdir() if path.is_dir()) == ROLE_NAMES


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_defaults_and_the_main_spec_name_the_same_variables(role: str) -> None:
    defaults, specs = load(role)
    options = specs["main"].get("options") or {}
    with_default = {name for name, spec in options.items() if not spec.get("required")}
    only_defaults, only_spec = sorted(set(defaults) - with_default), sorted(with_default - set(defaults))
    assert set(defaults) == with_default, f"only in defaults: {only_defaults}; only in the spec: {only_spec}"
    for name, spec in options.items():
        assert spec.get("required") or "default" in spec, f"{name} is neither required nor given a default"
        assert not (spec.get("required") and "default" in spec), f"{name} is required and has a default"
        assert name.startswith(f"{role}_"), f"{name} is not prefixed with the role's name"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_documented_defaults_are_the_real_ones(role: str) -> None:
    defaults, specs = load(role)
    for name, spec in (specs["main"].get("options") or {}).items():
        if "default" in spec:
            assert spec["default"] == defaults[name], f"{name}: documented {spec['default']!r}, is {defaults[name]!r}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_other_entry_points_agree_with_the_defaults(role: str) -> None:
    defaults, specs = load(role)
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            if "default" in option:
                assert name in defaults and option["default"] == defaults[name], f"{entry}: {name}"
            else:
                assert option.get("required"), f"{entry}: {name} has no default and is not required"
