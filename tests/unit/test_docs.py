"""No document or docstring points a reader to a file the repository does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.conftest import ROOT

TOP = ("roles", "playbooks", "tests", "runner", "bench", "scripts", "inventories", "molecule", ".ci")
#: `roles/stack/tasks/up.yml`-like references in backticks or links.
PATH_REFERENCE = re.compile(rf"(?:`|\]\()((?:{'|'.join(re.escape(t) for t in TOP)})/[^`)\s]*)")
#: Any other document named in any text file (a design note, a role README).
DOCUMENT = re.compile(r"(?<![\w/.-])([\w/.-]+\.md)\b")
SOURCES = [p for p in ROOT.rglob("*") if p.is_file() and p.suffix in {".md", ".py", ".yml", ".toml", ".j2"}
           and not {".venv", ".git", "__pycache__"} & set(p.parts)]  # fmt: skip


def exists(reference: str, near: Path) -> bool:
    reference = reference.rstrip(".,:;")
    for base in (ROOT, near.parent):
        if any(True for _ in base.glob(reference.replace("{", "*").replace("}", "*"))) or (base / reference).exists():
            return True
    return False


def references() -> list[tuple[Path, str]]:
    found = []
    for path in SOURCES:
        text = path.read_text(errors="replace")
        if path.suffix == ".md":
            found += [(path, ref) for ref in PATH_REFERENCE.findall(text)]
        found += [(path, ref) for ref in DOCUMENT.findall(text)]
    return found


@pytest.mark.parametrize(("source", "reference"), references(), ids=str)
def test_a_referenced_file_exists(source: Path, reference: str) -> None:
    assert exists(reference, source), (
        f"{source.relative_to(ROOT)} points to {reference}, which is not in the repository"
    )
