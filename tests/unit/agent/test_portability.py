"""The agent runs on the host's own Python: 3.10 syntax, the standard library, and no path of its own."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import shuttle_host

PACKAGE = Path(shuttle_host.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
#: The agent's one import outside the standard library (seed.py reads YAML user-data).
ALLOWED_THIRD_PARTY = {"yaml"}
#: Names that exist only in newer Pythons than the hosts' oldest (Ubuntu 22.04: 3.10).
NEWER_THAN_310 = {"UTC", "tomllib", "StrEnum", "Self", "TaskGroup", "ExceptionGroup", "batched", "override"}


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_parses_as_python_3_10(module: Path) -> None:
    ast.parse(module.read_text(), filename=str(module), feature_version=(3, 10))


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_imports_only_the_standard_library(module: Path) -> None:
    tree = ast.parse(module.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}  # fmt: skip
    foreign = imported - set(sys.stdlib_module_names) - {"shuttle_host", "__future__"} - ALLOWED_THIRD_PARTY
    assert not foreign, f"{module.name} imports {foreign}"
    if module.name != "seed.py":
        assert not imported & ALLOWED_THIRD_PARTY, f"{module.name} imports yaml; only seed.py may"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_uses_nothing_newer_than_python_3_10(module: Path) -> None:
    tree = ast.parse(module.read_text())
    names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not names & NEWER_THAN_310, f"{module.name} uses {names & NEWER_THAN_310}"
