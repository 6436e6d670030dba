"""The launch's `backup init` against a real restic repository in a directory: created once, the recovery key
added so it opens the repository, a second host joining with that key, a repository no key opens refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shuttle_host import backup, files, restic
from tests.unit.conftest import rebased, wiring_layout, write_settings

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")


def host(root: Path, layout: dict, stack_section: dict, backup_section: dict, name: str, repository: Path):
    """A host of its own under `root` (its own secrets), with the sections the fixtures render."""
    settings = write_settings(
        root / "agent",
        rebased(wiring_layout(), root),
        stack=stack_section,
        backup={**backup_section, "host": name, "repository": str(repository)},
    )
    files.create_secret(settings.layout.secret("backup_passphrase"), files.new_secret())
    return settings


def test_created_once_with_a_recovery_key_that_lets_another_host_join(tmp_path, layout, stack_section, backup_section):
    repository = tmp_path / "repo"
    recovery = tmp_path / "controller" / "recovery.key"
    recovery.parent.mkdir()
    recovery.write_text(files.new_secret() + "\n")
    first = host(tmp_path / "a", layout, stack_section, backup_section, "clinic-a", repository)
    made = backup.init_repository(first, str(recovery))
    assert (made["state"], made["changed"], made["recovery_added"]) == ("created", True, True)
    again = backup.init_repository(first, str(recovery))
    assert (again["state"], again["changed"]) == ("ok", False)
    assert restic.Repository(first.layout, first.backup, str(recovery)).state() == "ok"

    second = host(tmp_path / "b", layout, stack_section, backup_section, "clinic-b", repository)
    assert backup.init_repository(second)["state"] == "foreign"
    joined = backup.init_repository(second, str(recovery))
    assert joined["state"] == "joined" and restic.Repository(second.layout, second.backup).state() == "ok"

    stranger = host(tmp_path / "c", layout, stack_section, backup_section, "clinic-c", repository)
    other = tmp_path / "controller" / "other.key"
    other.write_text("not-the-recovery-key\n")
    refused = backup.init_repository(stranger, str(other))
    assert refused["state"] == "foreign" and not refused["recovery_added"]


def test_a_scheduled_run_never_creates_a_repository(tmp_path, layout, stack_section, backup_section):
    missing = tmp_path / "unmounted-nas" / "shuttle"
    settings = host(tmp_path / "a", layout, stack_section, backup_section, "clinic-a", missing)
    with pytest.raises(backup.Refused, match="there is no backup repository"):
        restic.Repository(settings.layout, settings.backup).open()
    assert not missing.exists()
