"""A restore as a transaction: nothing live changes before the backup is read in full, the app is stopped
before the safety backup, and any failure (or a kill, through the journal) ends in the state before it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shuttle_host import restore
from shuttle_host.errors import Failed, Refused
from tests.unit.agent.fake_repository import RUN
from tests.unit.agent.fake_repository import FakeRepository as FakeRepo

SAFETY = "20261105T100000Z"


class FakeHost:
    """Records every step; `fail_at` makes one of them fail as a broken repository or disk would."""

    def __init__(self, log: list[str], *, configured: bool = True, fail_at: str | None = None) -> None:
        self.log, self._configured, self.fail_at = log, configured, fail_at

    def _step(self, name: str) -> None:
        self.log.append(name)
        if name == self.fail_at:
            raise Failed(f"{name} broke")

    def configured(self) -> bool:
        return self._configured

    def check_space(self, needed: int) -> None:
        self._step(f"check space {needed}")

    def stage(self, files_snapshot: str, db_snapshot: str) -> None:
        self._step(f"stage {files_snapshot} {db_snapshot}")

    def stop_serving(self) -> None:
        self._step("stop app and proxy")

    def safety_backup(self) -> dict[str, Any]:
        self._step("safety backup")
        return {"result": "ok", "run": SAFETY, "message": "saved"}

    def swap(self) -> None:
        self._step("swap")

    def start(self) -> None:
        self._step("start and wait")

    def commit(self) -> None:
        self._step("commit")

    def roll_back(self) -> None:
        self._step("roll back")

    def discard_staging(self, *, restart: bool) -> None:
        self._step("discard staging" + (" and start" if restart else ""))


@pytest.fixture
def journal(tmp_path: Path) -> restore.Journal:
    return restore.Journal(tmp_path / "restore-journal.json")


def test_the_backup_is_read_in_full_before_the_app_stops_and_the_safety_backup_follows_the_stop(journal) -> None:
    log: list[str] = []
    result = restore.restore(FakeRepo(log), FakeHost(log), "latest", journal, margin=20)
    assert log == [
        "open", "check space 2400", "stage bbbbbbbb aaaaaaaa", "stop app and proxy", "safety backup", "swap",
        "start and wait", "commit",
    ]  # fmt: skip
    assert result["run"] == RUN and result["safety"] == SAFETY
    assert f"safety backup {SAFETY}" in result["message"]
    assert journal.read() is None


def test_an_unconfigured_host_has_nothing_to_keep_first(journal) -> None:
    log: list[str] = []
    result = restore.restore(FakeRepo(log), FakeHost(log, configured=False), RUN, journal)
    assert "safety backup" not in log and result["safety"] is None


def test_an_unreadable_database_part_is_refused_while_the_app_still_serves(journal) -> None:
    log: list[str] = []
    with pytest.raises(Failed, match="stage bbbbbbbb aaaaaaaa broke; nothing on this host was changed"):
        restore.restore(FakeRepo(log), FakeHost(log, fail_at="stage bbbbbbbb aaaaaaaa"), "latest", journal)
    assert "stop app and proxy" not in log and log[-1] == "discard staging"
    assert journal.read() is None


def test_too_little_space_is_refused_before_anything_is_staged(journal) -> None:
    class Full(FakeHost):
        def check_space(self, needed: int) -> None:
            raise Refused(f"the restore needs {needed} bytes")

    log: list[str] = []
    with pytest.raises(Refused, match="the restore needs 2000 bytes"):
        restore.restore(FakeRepo(log), Full(log), "latest", journal)
    assert not any(step.startswith("stage") for step in log) and "stop app and proxy" not in log


def test_a_failed_safety_backup_restarts_the_app_and_changes_nothing(journal) -> None:
    class Unsafe(FakeHost):
        def safety_backup(self) -> dict[str, Any]:
            return {"result": "failed", "message": "disk full"}

    log: list[str] = []
    with pytest.raises(Failed, match=r"the safety backup failed \(disk full\); nothing on this host was changed"):
        restore.restore(FakeRepo(log), Unsafe(log), "latest", journal)
    assert "swap" not in log and log[-1] == "discard staging and start"


@pytest.mark.parametrize("step", ["swap", "start and wait"])
def test_a_failure_after_the_stop_rolls_back_and_names_the_safety_backup(journal, step: str) -> None:
    log: list[str] = []
    with pytest.raises(Failed, match=rf"rolled back: the host is as before the restore .*safety backup {SAFETY}"):
        restore.restore(FakeRepo(log), FakeHost(log, fail_at=step), "latest", journal)
    assert log[-1] == "roll back" and "commit" not in log
    assert journal.read() is None


def test_a_failed_roll_back_says_so_and_leaves_the_journal_for_the_next_attempt(journal) -> None:
    class Stuck(FakeHost):
        def roll_back(self) -> None:
            raise Failed("the database container is gone")

    log: list[str] = []
    with pytest.raises(Failed, match=r"so did the roll-back .*run the restore again, or restore the safety backup"):
        restore.restore(FakeRepo(log), Stuck(log, fail_at="start and wait"), "latest", journal)
    assert journal.read()["phase"] == "swapping"


@pytest.mark.parametrize(
    ("phase", "undo"),
    [("staging", "discard staging"), ("stopped", "discard staging and start"), ("swapping", "roll back"),
     ("committing", "commit")],
)  # fmt: skip
def test_a_killed_restore_is_undone_by_the_phase_it_reached(journal, phase: str, undo: str) -> None:
    """A SIGKILL runs no handler: the journal is what tells the restore unit's stop (and the next restore or
    backup) what to undo."""
    journal.write(run=RUN, phase=phase, safety=SAFETY if phase in ("swapping", "committing") else None)
    log: list[str] = []
    done = restore.recover(FakeHost(log), journal)
    assert log == [undo] and journal.read() is None
    assert done and RUN in done


def test_a_restore_after_a_killed_one_rolls_that_back_first(journal) -> None:
    journal.write(run="20261020T020000Z", phase="swapping", safety=SAFETY)
    log: list[str] = []
    restore.restore(FakeRepo(log), FakeHost(log), "latest", journal)
    assert log[:2] == ["roll back", "open"] and log[-1] == "commit"


def test_nothing_to_recover_is_no_step(journal) -> None:
    log: list[str] = []
    assert restore.recover(FakeHost(log), journal) is None and log == []


def test_an_unknown_backup_is_refused_before_any_step(journal) -> None:
    log: list[str] = []
    with pytest.raises(Refused, match="no backup 'nonexistent'"):
        restore.restore(FakeRepo(log), FakeHost(log), "nonexistent", journal)
    assert log == ["open"] and journal.read() is None
