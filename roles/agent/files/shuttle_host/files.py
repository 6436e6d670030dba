"""Writing files so that a crash never leaves half of one, and secrets that are created once.

Everything the agent writes goes through here: a temporary file in the same directory, flushed to
disk and renamed over the old one (atomic on POSIX), created with its final mode so no other user
ever sees it readable. Secrets are created with O_EXCL and never rewritten: a second run, or a
first boot retried after a crash, keeps the value the first one generated.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str, mode: int = 0o600) -> bool:
    """Replace `path` with `text` (mode `mode`); False, touching nothing, when it already holds exactly that."""
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o7777) == mode:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # the umask may have narrowed it
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return True


def write_json(path: Path, data: Any, mode: int = 0o600) -> bool:
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when there is no such file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def new_secret(nbytes: int = 24) -> str:
    """A random secret that is safe everywhere it goes: env files, SQL literals, shell-free argv."""
    return secrets.token_urlsafe(nbytes)


def create_secret(path: Path, value: str) -> bool:
    """Write a root-only secret once; False (and the file untouched) when it already exists.

    The value is written whole to a temporary file first and then hard-linked into place, which
    fails if the name exists: a crash leaves either no secret or a complete one, never an empty one.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        return False
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def read_secret(path: Path) -> str:
    return path.read_text().strip()


def parse_directory(spec: str) -> tuple[Path, int]:
    """`PATH:MODE` (octal, as `0750`) as the path and the mode; a bad one is refused before anything changes."""
    path, sep, mode = spec.rpartition(":")
    if not sep or not path.startswith("/") or not mode or any(c not in "01234567" for c in mode) or len(mode) > 4:
        raise ValueError(f"{spec!r}: expected an absolute PATH:MODE, the mode in octal (as /etc/x:0750)")
    return Path(path), int(mode, 8)


def ensure_directories(wanted: list[tuple[Path, int]], uid: int = 0, gid: int = 0) -> list[str]:
    """Make each directory (parents first, in the given order) with its mode and owner, or correct those of one
    that exists; the paths that changed. One call for what would be a round trip per directory from a role.

    A symlink to a directory counts as that directory (an admin may have moved one to another disk): its target
    gets the mode and owner, as Ansible's file module does. A path that exists and is not a directory fails
    (FileExistsError) rather than being replaced."""
    changed = []
    for path, mode in wanted:
        made = False
        try:
            path.mkdir(mode=0o700)
            made = True
        except FileExistsError:
            if not path.is_dir():
                raise FileExistsError(f"{path} exists and is not a directory") from None
        info = path.stat()
        if made or stat.S_IMODE(info.st_mode) != mode or (info.st_uid, info.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
            os.chmod(path, mode)  # after chown, which may clear set-id bits
            changed.append(str(path))
    return changed
