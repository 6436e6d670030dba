"""A backup run: both parts or nothing, and a record that says how it went even when it crashed."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shuttle_host import backup, runs
from shuttle_host.errors import Failed


class Dump:
    """A finished `mariadb-dump` process."""

    def __init__(self, code: int = 0) -> None:
        self.stdout = io.BytesIO(b"-- dump")
        self.stderr = io.BytesIO(b"" if code == 0 else b"mariadb-dump: Got error: 2013: Lost connection")
        self.code = code

    def wait(self) -> int:
        return self.code


class FakeRepo:
    def __init__(self, *, files_fail: bool = False) -> None:
        self.snapshots: list[dict[str, Any]] = []
        self.forgotten: list[str] = []
        self.files_fail = files_fail
        self.retained = False

    def open(self, *, create: bool) -> None:
        assert create

    def runs(self) -> dict[str, runs.Run]:
        return runs.group(s for s in self.snapshots if s["id"] not in self.forgotten)

    def forget(self, ids: list[str]) -> None:
        self.forgotten += ids

    def _save(self, tags: list[str]) -> None:
        values = [tags[i + 1] for i, tag in enumerate(tags) if tag == "--tag"]
        number = len(self.snapshots)
        self.snapshots.append({"id": f"{number:064d}", "short_id": f"{number:08d}", "time": "t", "tags": values})

    def backup_stream(self, name: str, source: Any, tags: list[str]) -> subprocess.CompletedProcess[str]:
        self._save(tags)
        return subprocess.CompletedProcess([], 0, "", "")

    def backup_paths(self, paths: list[str], tags: list[str]) -> None:
        if self.files_fail:
            raise Failed("restic backup: no space left on device")
        self._save(tags)

    def apply_retention(self) -> None:
        self.retained = True


class FakeSite:
    def __init__(self, *, configured: bool = True, dump_code: int = 0) -> None:
        self._configured, self.dump_code = configured, dump_code
        self.db = self

    name = "openemr"

    def configured(self) -> bool:
        return self._configured

    def dump(self) -> Dump:
        return Dump(self.dump_code)

    def paths(self) -> list[str]:
        return ["/sites"]


def test_a_run_saves_both_parts_under_one_id_then_applies_retention() -> None:
    repo = FakeRepo()
    result = backup.take(repo, FakeSite(), safety=False)  # type: ignore[arg-type]
    (run,) = runs.complete(repo.runs())
    assert result["result"] == "ok" and result["run"] == run.run and repo.retained


def test_a_run_that_fails_in_its_files_part_leaves_no_part_behind() -> None:
    repo = FakeRepo(files_fail=True)
    with pytest.raises(Failed, match="no space left"):
        backup.take(repo, FakeSite(), safety=False)  # type: ignore[arg-type]
    assert repo.runs() == {} and len(repo.forgotten) == 1 and not repo.retained


def test_a_failed_dump_is_not_saved_as_a_backup() -> None:
    repo = FakeRepo()
    with pytest.raises(Failed, match="the database dump failed: mariadb-dump: Got error"):
        backup.take(repo, FakeSite(dump_code=2), safety=False)  # type: ignore[arg-type]
    assert repo.runs() == {}


def test_incomplete_runs_of_killed_backups_are_removed_first() -> None:
    repo = FakeRepo()
    repo.snapshots.append({"id": "k" * 64, "short_id": "kkkkkkkk", "time": "t",
                           "tags": ["shuttle", "shuttle-run=20261101T020000Z", "part=db"]})  # fmt: skip
    backup.take(repo, FakeSite(), safety=True)  # type: ignore[arg-type]
    assert "k" * 64 in repo.forgotten
    (run,) = runs.complete(repo.runs())
    assert run.safety


def test_an_unconfigured_site_is_skipped_not_failed() -> None:
    result = backup.take(FakeRepo(), FakeSite(configured=False), safety=False)  # type: ignore[arg-type]
    assert result["result"] == "skipped"


def test_a_crash_is_recorded_as_a_failed_run(host_settings, monkeypatch) -> None:
    def crash(*args: object, **kwargs: object) -> dict:
        raise PermissionError("[Errno 13] Permission denied: '/run/lock'")

    monkeypatch.setattr(backup, "take", crash)
    result = backup.run(host_settings, safety=False, passphrase_file=None)
    record = json.loads(Path(host_settings.layout.backup_record).read_text())
    assert result["result"] == record["result"] == "failed"
    assert "PermissionError" in record["message"] and record["finished"] >= record["started"]


def test_a_second_backup_is_refused_while_one_runs(host_settings) -> None:
    lock = Path(host_settings.layout.backup_lock)
    with (
        backup.exclusive(lock),
        pytest.raises(Exception, match="another backup, check or restore is running"),
        backup.exclusive(lock),
    ):
        pass
