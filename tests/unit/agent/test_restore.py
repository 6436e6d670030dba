"""A restore's order: nothing live is touched before the backup is read, and a safety backup comes first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shuttle_host import restore, runs
from shuttle_host.errors import Failed, Refused

RUN = "20261101T020000Z"
LISTING = [
    {"id": "a" * 64, "short_id": "aaaaaaaa", "time": "2026-11-01T02:00:00Z",
     "tags": ["shuttle", f"shuttle-run={RUN}", "part=db"]},
    {"id": "b" * 64, "short_id": "bbbbbbbb", "time": "2026-11-01T02:00:01Z",
     "tags": ["shuttle", f"shuttle-run={RUN}", "part=files"]},
]  # fmt: skip


class FakeRepo:
    location = "sftp:clinic@backup.example.org:/srv/clinic"

    def __init__(self, log: list[str], snapshots: list[dict] | None = None) -> None:
        self.log = log
        self.snapshots = LISTING if snapshots is None else snapshots

    def open(self, *, create: bool) -> None:
        self.log.append(f"open create={create}")

    def runs(self) -> dict[str, runs.Run]:
        return runs.group(self.snapshots)


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

    def safety_backup(self) -> dict[str, Any]:
        self._step("safety backup")
        return {"result": "ok", "run": "20261105T100000Z", "message": "saved"}

    def paths(self) -> list[str]:
        return ["/sites", "/etc/shuttle"]

    def stage(self, snapshot: str, paths: list[str]) -> Path:
        self._step(f"stage {snapshot}")
        return Path("/staging")

    def stop_serving(self) -> None:
        self._step("stop app and proxy")

    def load_database(self, snapshot: str) -> None:
        self._step(f"load database {snapshot}")

    def swap_in(self, staging: Path, paths: list[str]) -> None:
        self._step("swap in files")

    def discard(self, staging: Path) -> None:
        self.log.append("discard staging")

    def adopt_secrets(self) -> None:
        self._step("adopt secrets")

    def start(self) -> None:
        self._step("start and wait")


def test_the_steps_run_in_order_with_the_safety_backup_first() -> None:
    log: list[str] = []
    result = restore.restore(FakeRepo(log), FakeHost(log), "latest")
    assert log == [
        "open create=False", "safety backup", "stage bbbbbbbb", "stop app and proxy", "load database aaaaaaaa",
        "swap in files", "discard staging", "adopt secrets", "start and wait",
    ]  # fmt: skip
    assert result["run"] == RUN and result["safety"] == "20261105T100000Z"
    assert "safety backup 20261105T100000Z" in result["message"]


def test_an_unconfigured_host_has_nothing_to_keep_first() -> None:
    log: list[str] = []
    result = restore.restore(FakeRepo(log), FakeHost(log, configured=False), RUN)
    assert "safety backup" not in log and result["safety"] is None


def test_a_repository_that_fails_while_staging_leaves_the_host_serving() -> None:
    log: list[str] = []
    with pytest.raises(Failed, match="stage bbbbbbbb broke"):
        restore.restore(FakeRepo(log), FakeHost(log, fail_at="stage bbbbbbbb"), "latest")
    assert "stop app and proxy" not in log and not any(step.startswith("load") for step in log)


def test_a_failed_safety_backup_stops_the_restore_before_anything_changes() -> None:
    class Unsafe(FakeHost):
        def safety_backup(self) -> dict[str, Any]:
            return {"result": "failed", "message": "disk full"}

    log: list[str] = []
    with pytest.raises(Failed, match="the safety backup failed: disk full"):
        restore.restore(FakeRepo(log), Unsafe(log), "latest")
    assert log == ["open create=False"]


def test_a_failed_database_load_still_discards_the_staging_copy() -> None:
    log: list[str] = []
    with pytest.raises(Failed):
        restore.restore(FakeRepo(log), FakeHost(log, fail_at="load database aaaaaaaa"), "latest")
    assert log[-1] == "discard staging" and "swap in files" not in log


def test_an_unknown_backup_is_refused_before_any_step() -> None:
    log: list[str] = []
    with pytest.raises(Refused, match="no backup 'nonexistent'"):
        restore.restore(FakeRepo(log), FakeHost(log), "nonexistent")
    assert log == ["open create=False"]
