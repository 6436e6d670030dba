"""Files the agent writes: whole or not at all, with their final mode from the start, secrets once."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from shuttle_host import cli, files


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


def test_directories_are_made_parents_first_with_their_modes_then_left_alone(tmp_path: Path) -> None:
    me = (os.getuid(), os.getgid())
    wanted = [(tmp_path / "a", 0o755), (tmp_path / "a" / "b", 0o700)]
    assert files.ensure_directories(wanted, *me) == [str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    assert mode(tmp_path / "a") == 0o755 and mode(tmp_path / "a" / "b") == 0o700
    assert files.ensure_directories(wanted, *me) == []


def test_a_directory_whose_mode_drifted_is_corrected_and_named(tmp_path: Path) -> None:
    me = (os.getuid(), os.getgid())
    (tmp_path / "d").mkdir(mode=0o777)
    os.chmod(tmp_path / "d", 0o777)
    assert files.ensure_directories([(tmp_path / "d", 0o750)], *me) == [str(tmp_path / "d")]
    assert mode(tmp_path / "d") == 0o750


def test_a_symlink_to_a_directory_is_kept_and_its_target_gets_the_mode(tmp_path: Path) -> None:
    me = (os.getuid(), os.getgid())
    (tmp_path / "disk").mkdir(mode=0o777)
    os.chmod(tmp_path / "disk", 0o777)
    (tmp_path / "link").symlink_to(tmp_path / "disk")
    assert files.ensure_directories([(tmp_path / "link", 0o750)], *me) == [str(tmp_path / "link")]
    assert (tmp_path / "link").is_symlink() and mode(tmp_path / "disk") == 0o750


def test_a_file_where_a_directory_belongs_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("keep")
    with pytest.raises(FileExistsError, match="not a directory"):
        files.ensure_directories([(tmp_path / "f", 0o700)], os.getuid(), os.getgid())
    assert (tmp_path / "f").read_text() == "keep"


@pytest.mark.parametrize("spec", ["relative:0700", "/x", "/x:", "/x:0999", "/x:rwx", "/x:07777"])
def test_a_bad_directory_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="PATH:MODE"):
        files.parse_directory(spec)


def test_the_dirs_command_names_what_it_changed_and_refuses_a_bad_spec_before_making_any(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = tmp_path / "made"
    assert cli.main(["dirs", f"{made}:0700", "relative:0700"]) == 2
    assert not made.exists()
    if os.getuid() == 0:  # root-owned, as on a host
        assert cli.main(["dirs", f"{made}:0700"]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"changed": [str(made)]}
