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

DUMP = b"""CREATE TABLE `patient_data` (
INSERT INTO `patient_data` VALUES (1,'Ada'),(2,'Grace');
CREATE TABLE `log` (
-- Dump completed
"""


class Dump:
    """A finished `mariadb-dump` process."""

    def __init__(self, code: int = 0) -> None:
        self.stdout = io.BytesIO(DUMP)
        self.stderr = io.BytesIO(b"" if code == 0 else b"mariadb-dump: Got error: 2013: Lost connection")
        self.code = code

    def wait(self) -> int:
        return self.code


class FakeRepo:
    host = "clinic"

    def __init__(self, *, files_fail: bool = False) -> None:
        self.snapshots: list[dict[str, Any]] = []
        self.forgotten: list[str] = []
        self.files_fail = files_fail
        self.retained = False
        self.excluded: list[str] = []
        self.streamed = b""
        self.saved_paths: list[str] = []

    def open(self) -> None:
        pass

    def runs(self) -> dict[str, runs.Run]:
        return runs.group((s for s in self.snapshots if s["id"] not in self.forgotten), host=self.host)

    def forget(self, ids: list[str]) -> None:
        self.forgotten += ids

    def _save(self, tags: list[str]) -> None:
        values = [tags[i + 1] for i, tag in enumerate(tags) if tag == "--tag"]
        number = len(self.snapshots)
        self.snapshots.append({"id": f"{number:064d}", "short_id": f"{number:08d}", "time": "t", "tags": values})

    def backup_stream(self, name: str, source: Any, tags: list[str], each_line: Any) -> subprocess.CompletedProcess:
        for line in source:
            each_line(line)
            self.streamed += line
        self._save(tags)
        return subprocess.CompletedProcess([], 0, "", "")

    def backup_paths(self, paths: list[str], tags: list[str], exclude: list[str]) -> None:
        if self.files_fail:
            raise Failed("restic backup: no space left on device")
        self.excluded, self.saved_paths = exclude, paths
        self._save(tags)

    def apply_retention(self, pinned: list[str]) -> list[str]:
        self.retained = True
        return []


class FakeSite:
    def __init__(self, *, configured: bool = True, dump_code: int = 0, layout: Any = None) -> None:
        self._configured, self.dump_code = configured, dump_code
        self.db = self
        self.layout = layout
        self.manifest: tuple[str, dict] | None = None
        self.log: list[str] = []

    name = "openemr"

    def configured(self) -> bool:
        return self._configured

    def dump(self) -> Dump:
        self.log.append("dump")
        return Dump(self.dump_code)

    def paths(self) -> list[str]:
        return ["/sites"]

    def canary(self) -> dict:
        self.log.append("canary")
        return {"ciphertext": "006", "sha256": "0" * 64}

    def write_manifest(self, run_id: str, tables: dict, canary: dict) -> str:
        self.log.append("manifest")
        self.manifest = (run_id, tables)
        return "/var/lib/manifest.json"


def test_a_run_saves_both_parts_under_one_id_then_applies_retention(host_settings) -> None:
    repo = FakeRepo()
    result = backup.take(repo, FakeSite(layout=host_settings.layout), safety=False)  # type: ignore[arg-type]
    (run,) = runs.complete(repo.runs())
    assert result["result"] == "ok" and result["run"] == run.run and repo.retained and run.host == "clinic"


def test_the_manifest_describes_the_dump_as_saved_and_goes_into_the_files_part(host_settings) -> None:
    repo, site = FakeRepo(), FakeSite(layout=host_settings.layout)
    result = backup.take(repo, site, safety=False)  # type: ignore[arg-type]
    assert repo.streamed == DUMP, "the dump was not saved byte for byte"
    assert site.manifest is not None
    run_id, tables = site.manifest
    assert run_id == result["run"] and {name: entry["rows"] for name, entry in tables.items()} == {
        "patient_data": 2, "log": 0,
    }  # fmt: skip
    assert repo.saved_paths == ["/sites", "/var/lib/manifest.json"]
    assert site.log == ["canary", "dump", "manifest"], "a key the canary makes must be in the dump"


def test_a_safety_backup_applies_no_retention(host_settings) -> None:
    repo = FakeRepo()
    backup.take(repo, FakeSite(layout=host_settings.layout), safety=True, retention=False)  # type: ignore[arg-type]
    (run,) = runs.complete(repo.runs())
    assert run.safety and not repo.retained


def test_the_host_s_own_keys_stay_out_of_the_files_part(host_settings) -> None:
    """A backup holding the repository passphrase, the S3 secret or the SFTP key would hold the means to read
    and delete itself; the database root password is this host's too."""
    repo = FakeRepo()
    backup.take(repo, FakeSite(layout=host_settings.layout), safety=False)  # type: ignore[arg-type]
    layout = host_settings.layout
    for key in ("backup_passphrase", "backup_s3_secret", "backup_ssh_key", "db_root"):
        assert str(layout.secret(key)) in repo.excluded
    assert layout.backup_known_hosts in repo.excluded and str(layout.secret("db")) not in repo.excluded


def test_a_run_that_fails_in_its_files_part_leaves_no_part_behind(host_settings) -> None:
    repo = FakeRepo(files_fail=True)
    with pytest.raises(Failed, match="no space left"):
        backup.take(repo, FakeSite(layout=host_settings.layout), safety=False)  # type: ignore[arg-type]
    assert repo.runs() == {} and len(repo.forgotten) == 1 and not repo.retained


def test_a_failed_dump_is_not_saved_as_a_backup() -> None:
    repo = FakeRepo()
    with pytest.raises(Failed, match="the database dump failed: mariadb-dump: Got error"):
        backup.take(repo, FakeSite(dump_code=2), safety=False)  # type: ignore[arg-type]
    assert repo.runs() == {}


def test_incomplete_runs_of_killed_backups_are_removed_first_but_only_this_host_s(host_settings) -> None:
    """Another host's run missing a part may be one it is writing right now."""
    repo = FakeRepo()
    for owner, letter in (("clinic", "k"), ("other", "o")):
        tags = ["shuttle", f"shuttle-host={owner}", "shuttle-run=20261101T020000Z", "part=db"]
        repo.snapshots.append({"id": letter * 64, "short_id": letter * 8, "time": "t", "tags": tags})
    backup.take(repo, FakeSite(layout=host_settings.layout), safety=True)  # type: ignore[arg-type]
    assert "k" * 64 in repo.forgotten and "o" * 64 not in repo.forgotten
    (run,) = runs.complete(repo.runs())
    assert run.safety


def test_an_unconfigured_site_is_skipped_not_failed() -> None:
    result = backup.take(FakeRepo(), FakeSite(configured=False), safety=False)  # type: ignore[arg-type]
    assert result["result"] == "skipped"


def test_a_killed_run_is_recorded_as_failed_not_left_running(host_settings, monkeypatch) -> None:
    """The unit's ExecStopPost turns a record still saying "running" into a failed one."""
    monkeypatch.setattr(backup, "take", lambda *args, **kwargs: (_ for _ in ()).throw(SystemExit(137)))
    with pytest.raises(SystemExit):
        backup.run(host_settings, safety=False, passphrase_file=None)
    path = Path(host_settings.layout.backup_record)
    assert json.loads(path.read_text())["result"] == "running"
    assert backup.stopped(host_settings, path, "signal")
    record = json.loads(path.read_text())
    assert record["result"] == "failed" and "stopped before it finished (systemd: signal)" in record["message"]
    assert not backup.stopped(host_settings, path, "signal"), "a finished record is left as it is"


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
