"""Files the agent writes: whole or not at all, with their final mode from the start, secrets once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shuttle_host import files


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_write_replaces_the_file_whole_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    assert files.write_atomic(path, "new\n", 0o600) is True
    assert path.read_text() == "new\n" and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temporary file left


def test_writing_the_same_content_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "env"
    files.write_atomic(path, "A=1\n")
    before = path.stat().st_ino
    assert files.write_atomic(path, "A=1\n") is False
    assert path.stat().st_ino == before


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "env"
    path.write_text("old\n")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        files.write_atomic(path, "new\n")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["env"]


def test_a_secret_is_created_once_root_only(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "db-password"
    assert files.create_secret(path, "first") is True
    assert files.create_secret(path, "second") is False
    assert files.read_secret(path) == "first"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_a_crash_while_creating_a_secret_never_leaves_an_empty_one(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "db-password"

    def crash(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        files.create_secret(path, "value")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert files.create_secret(path, "value") is True and files.read_secret(path) == "value"


def test_new_secrets_are_long_and_need_no_quoting() -> None:
    values = {files.new_secret() for _ in range(50)}
    assert len(values) == 50
    assert all(len(value) >= 32 and value.replace("-", "").replace("_", "").isalnum() for value in values)
