"""A backup's manifest: what its database and documents held, written while the backup is taken.

restic proves that a snapshot's bytes come back as they went in; the manifest lets a drill (and a
restore) prove more: that the database the dump loads into holds the same rows as the one backed up,
that every document is there with its content, and which images and OpenEMR `docker-version` the
data belongs to.

Tables are described from the dump itself, as it streams into the repository (`DumpDigest`), so the
manifest and the dump are one consistent snapshot even while OpenEMR writes: per table its row count
and the sha256 of its INSERT lines. A database loaded from the dump and dumped again with the same
options gives the same lines, which is how a drill checks it. Documents are hashed just before the
files part is read: a document added in between is in the backup but not in the manifest (reported as
extra, not as a problem); one listed in the manifest must be there with the same hash.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

#: The manifest's format: a reader refuses one it does not know rather than misreading it.
VERSION = 1
#: OpenEMR's upgrade marker in a site directory: the image's upgrade scripts have run up to this number.
DOCKER_VERSION = "default/docker-version"

_CREATE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)`")
_INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` VALUES ?")
# In a VALUES list: a quoted string (skipped whole, escapes included), or a parenthesis.
_TOKENS = re.compile(rb"'(?:[^'\\]|\\.)*'|[()]", re.DOTALL)


def count_rows(values: bytes) -> int:
    """Rows in the VALUES part of an extended INSERT: top-level parenthesised tuples."""
    depth = rows = 0
    for token in _TOKENS.finditer(values):
        text = token.group()
        if text == b"(":
            rows += depth == 0
            depth += 1
        elif text == b")":
            depth -= 1
    return rows


def _name(match: re.Match[bytes]) -> str:
    return match.group(1).replace(b"``", b"`").decode(errors="replace")


class DumpDigest:
    """Fed a mariadb-dump line by line: each table's rows and the sha256 of its data.

    An extended INSERT is one line in some mariadb-dump versions and a line per row in others (10.11:
    `INSERT INTO `t` VALUES` then `(1,...),` lines): a statement runs until a line ending in `;`. No
    string value spans lines (the dump writes a newline in a value as `\\n`), so a line's last
    character is never inside a string."""

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}
        self._hashes: dict[str, Any] = {}
        self._open: str | None = None  # the table whose INSERT statement has not ended yet

    def _table(self, name: str) -> None:
        if name not in self._hashes:
            self._rows[name] = 0
            self._hashes[name] = hashlib.sha256()

    def feed(self, line: bytes) -> None:
        values = line
        if self._open is None:
            insert = _INSERT.match(line)
            if insert is None:
                created = _CREATE.match(line)
                if created:
                    self._table(_name(created))
                return
            self._open = _name(insert)
            self._table(self._open)
            values = line[insert.end() :]
        self._rows[self._open] += count_rows(values)
        self._hashes[self._open].update(line.rstrip(b"\n") + b"\n")
        if line.rstrip().endswith(b";"):
            self._open = None

    def tables(self) -> dict[str, dict[str, Any]]:
        return {name: {"rows": self._rows[name], "sha256": self._hashes[name].hexdigest()} for name in self._hashes}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def documents(sites: Path) -> dict[str, str]:
    """Every regular file under each site's documents/ (the encryption keys in logs_and_misc/methods
    included), by its path relative to sites/, with its sha256."""
    found: dict[str, str] = {}
    for site in sorted(path for path in sites.iterdir() if path.is_dir()) if sites.is_dir() else []:
        root = site / "documents"
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(sites))] = file_sha256(path)
    return found


def docker_version(sites: Path) -> str | None:
    marker = sites / DOCKER_VERSION
    return marker.read_text().strip() if marker.is_file() else None


def build(run_id: str, tables: dict[str, dict[str, Any]], sites: Path, images: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": VERSION,
        "run": run_id,
        "images": images,
        "docker_version": docker_version(sites),
        "tables": tables,
        "documents": documents(sites),
    }


def compare(expected: dict[str, Any], tables: dict[str, dict[str, Any]], docs: dict[str, str]) -> dict[str, Any]:
    """What a restored copy (`tables` from a dump of it, `docs` from its sites/) lacks or holds differently
    from the manifest `expected`: problems (each one line), and what was checked."""
    problems: list[str] = []
    for name, want in sorted(expected["tables"].items()):
        got = tables.get(name)
        if got is None:
            problems.append(f"table {name} is missing")
        elif got["rows"] != want["rows"]:
            problems.append(f"table {name} has {got['rows']} rows, the backup had {want['rows']}")
        elif got["sha256"] != want["sha256"]:
            problems.append(f"table {name} holds other data than the backup ({want['rows']} rows)")
    problems += [f"table {name} was not in the backup" for name in sorted(set(tables) - set(expected["tables"]))]
    for path, digest in sorted(expected["documents"].items()):
        if path not in docs:
            problems.append(f"document {path} is missing")
        elif docs[path] != digest:
            problems.append(f"document {path} differs from the backup")
    return {
        "problems": problems,
        "tables": len(expected["tables"]),
        "rows": sum(int(entry["rows"]) for entry in expected["tables"].values()),
        "documents": len(expected["documents"]),
        "documents_added_since": len(set(docs) - set(expected["documents"])),
    }
