"""Taking a backup: one run of two snapshots, the database streamed and the files, or nothing at all.

The database part is `mariadb-dump --single-transaction` piped straight into restic (no copy on the
host's disk); the files part is OpenEMR's sites/ volume, the proxy's TLS state and Shuttle's config
directory (a backup's database and sites/ are one matched set: sites/ holds the keys that decrypt
data in the database). A run that fails or is killed midway is removed, at the latest before the
next run starts, so every run `list` shows can be restored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shuttle_host import files, proc, runs
from shuttle_host.database import Database
from shuttle_host.errors import Failed, Refused
from shuttle_host.restic import Repository
from shuttle_host.settings import Settings
from shuttle_host.stack import Stack


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Site:
    """What a backup saves and a restore replaces on this host: the database and the data directories."""

    def __init__(self, settings: Settings, stack: Stack | None = None) -> None:
        self.settings = settings
        self.layout = settings.layout
        self.stack = stack or Stack(settings)
        self.db = Database(self.stack.docker, self.stack.settings.db_name)

    def configured(self) -> bool:
        return self.db.has_tables()

    def paths(self) -> list[str]:
        """The directories the files part holds: the chosen volumes, then Shuttle's config directory."""
        volumes = [self.stack.docker.volume_path(key) for key in self.settings.backup.volumes]
        return [*volumes, self.layout.config_dir]


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """One backup, check or restore at a time on this host (the lock goes with the process, even killed)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused("another backup, check or restore is running on this host") from None
        yield


def remove_incomplete(repo: Repository) -> None:
    for partial in runs.incomplete(repo.runs()):
        proc.say(f"removing the incomplete run {partial.run}")
        repo.forget(partial.ids)


def take(repo: Repository, site: Site, *, safety: bool) -> dict[str, Any]:
    """One run: the database part, then the files part, then retention. A failed run leaves nothing."""
    if not site.configured():
        return {"result": "skipped", "message": "OpenEMR is not configured yet: nothing to back up"}
    repo.open(create=True)
    remove_incomplete(repo)
    run_id = runs.new_run_id()
    tags = ["--tag", runs.SHUTTLE_TAG, "--tag", f"{runs.RUN_TAG}{run_id}"]
    if safety:
        tags += ["--tag", runs.SAFETY_TAG]
    try:
        proc.say(f"run {run_id}: database")
        dump = site.db.dump()
        assert dump.stdout is not None and dump.stderr is not None
        saved = repo.backup_stream(f"{site.db.name}.sql", dump.stdout, [*tags, "--tag", f"{runs.PART_TAG}db"])
        dump.stdout.close()
        dump_errors = dump.stderr.read().decode(errors="replace")
        if dump.wait() != 0:
            raise Failed(f"the database dump failed: {proc.last_lines(dump_errors)}")
        if saved.returncode != 0:
            raise Failed(f"restic backup (database): {proc.last_lines(saved.stderr)}")
        proc.say(f"run {run_id}: files")
        repo.backup_paths(site.paths(), [*tags, "--tag", f"{runs.PART_TAG}files"])
    except BaseException:
        with contextlib.suppress(Exception):
            repo.forget(repo.runs().get(run_id, runs.Run(run_id, "", None)).ids)
        raise
    proc.say(f"run {run_id}: retention and prune")
    repo.apply_retention()
    return {"result": "ok", "run": run_id, "message": f"backup {run_id} saved"}


def record(settings: Settings, status: dict[str, Any]) -> None:
    """The last run's result, where `status` and `backup --list` read it."""
    path = Path(settings.layout.backup_record)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.write_json(path, status)


def run(settings: Settings, *, safety: bool, passphrase_file: str | None) -> dict[str, Any]:
    """`backup run`: take a run under the host's lock and record how it went, whatever happened."""
    status: dict[str, Any] = {"started": now()}
    try:
        with exclusive(Path(settings.layout.backup_lock)):
            repo = Repository(settings.layout, settings.backup, passphrase_file)
            status |= take(repo, Site(settings), safety=safety)
    except (Refused, Failed) as problem:
        status |= {"result": "failed", "message": str(problem)}
    except KeyboardInterrupt:
        status |= {"result": "failed", "message": "interrupted"}
    except Exception as problem:  # a crash still leaves a record that says failed
        status |= {"result": "failed", "message": f"{type(problem).__name__}: {problem}"}
    status["finished"] = now()
    if passphrase_file is None:
        record(settings, status)
    return status


def listing(settings: Settings, passphrase_file: str | None) -> dict[str, Any]:
    """`backup list`: the repository, its state, its restorable runs and the last run's record."""
    repo = Repository(settings.layout, settings.backup, passphrase_file)
    state = repo.state()
    backups = [run.as_dict() for run in runs.complete(repo.runs())] if state == "ok" else []
    return {
        "repository": repo.location,
        "repository_state": state,
        "last_run": files.read_json(Path(settings.layout.backup_record)),
        "backups": backups,
    }


def check(settings: Settings, percent: int | None, passphrase_file: str | None) -> int:
    with exclusive(Path(settings.layout.backup_lock)):
        repo = Repository(settings.layout, settings.backup, passphrase_file)
        repo.open(create=False)
        read = settings.backup.check_read_percent if percent is None else percent
        repo.check(read)
    return read
