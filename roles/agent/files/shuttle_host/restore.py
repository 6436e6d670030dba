"""Restoring a backup as a transaction: the host ends restored and healthy, or exactly as it was.

The order is the point, and `restore` is written as that order over a host object, so it is tested
without a host:

1. open the repository and pick the run (nothing changes if either fails: exit 2);
2. check the free space the staged copies need;
3. stage, with OpenEMR still serving: the backup's files are restored beside the directories they
   replace (swap.py) and its database dump is loaded, to its last line, into a scratch database; both
   are compared with the backup's manifest (manifest.py). A backup that cannot be read, or that does
   not hold what its manifest says, fails here, and nothing live has changed;
4. stop the application and the proxy, then take the safety backup (no write can fall between them);
5. swap: the scratch tables become the live ones and the live ones are moved aside (one RENAME
   TABLE), each staged directory is renamed into place with the live one kept beside it, the
   application's database user gets the restored password and the env file is rewritten;
6. start the stack and wait for it by the one readiness rule; only then commit (drop the old copies).

Any failure after step 4 rolls the host back to the state before the restore, automatically, and the
message says so and names the safety backup. A journal (the layout's restore_journal) says which
phase a restore reached, so that a killed one is rolled back by `recover` (the restore unit's
ExecStopPost, and the start of every restore and backup): what each directory and the database are
in is read from the host itself (swap.py), so a kill between two steps is undone like a failure.

This host keeps its own agent settings, database root password and backup credentials (repository
passphrase, SFTP key and known hosts, S3 secret): a restore brings the clinic's data and the
application's secrets, not the old host's keys to its repository.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from shuttle_host import files, manifest, proc, runs, swap
from shuttle_host.backup import Site, host_own_files, take
from shuttle_host.errors import Failed, Refused
from shuttle_host.restic import Repository
from shuttle_host.settings import Settings

SCRATCH = "{}_restore"
BEFORE = "{}_before_restore"


class Host(Protocol):
    def configured(self) -> bool: ...
    def check_space(self, needed: int) -> None: ...
    def stage(self, files_snapshot: str, db_snapshot: str) -> None: ...
    def stop_serving(self) -> None: ...
    def safety_backup(self) -> dict[str, Any]: ...
    def swap(self) -> None: ...
    def start(self) -> None: ...
    def commit(self) -> None: ...
    def roll_back(self) -> None: ...
    def discard_staging(self, *, restart: bool) -> None: ...


class Journal:
    """Which phase a restore reached (staging, stopped, swapping, committing), on disk, atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any] | None:
        data = files.read_json(self.path)
        return data if isinstance(data, dict) else None

    def write(self, **entry: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        files.write_json(self.path, {**(self.read() or {}), **entry})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def recover(host: Host, journal: Journal) -> str | None:
    """Undo a restore that did not finish (killed, or its machine rebooted); what was done, or None."""
    entry = journal.read()
    if entry is None:
        return None
    phase = entry.get("phase")
    if phase == "committing":
        host.commit()
        done = f"the restore of {entry.get('run')} had finished: its old copies are removed"
    elif phase == "swapping":
        host.roll_back()
        done = f"the restore of {entry.get('run')} did not finish: rolled back to the state before it"
    else:
        host.discard_staging(restart=phase == "stopped")
        done = f"the restore of {entry.get('run')} did not finish before changing anything: its staging is removed"
    if entry.get("safety"):
        done += f" (safety backup {entry['safety']})"
    journal.clear()
    proc.say(done)
    return done


def restore(repo: runs.Source, host: Host, wanted: str, journal: Journal, *, margin: int = 0) -> dict[str, Any]:
    """Restore the run `wanted` names (see runs.pick) onto `host`, in the order of the module docstring."""
    recover(host, journal)
    repo.open()
    chosen = runs.pick(repo.runs(), wanted, repo.location, others=runs.hosts_in(repo.snapshots()))
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    journal.write(run=chosen.run, phase="staging", started=started, safety=None)
    try:
        size = sum(repo.restore_size(chosen.parts[part]) for part in runs.PARTS)
        host.check_space(size + size * margin // 100)
        proc.say(f"restoring backup {chosen.run}: staging its files and loading its database beside the live ones")
        host.stage(chosen.parts["files"], chosen.parts["db"])
    except BaseException as problem:
        host.discard_staging(restart=False)
        journal.clear()
        if isinstance(problem, Refused):
            raise
        if isinstance(problem, Failed):
            raise Failed(f"{problem}; nothing on this host was changed") from None
        raise
    journal.write(phase="stopped")
    proc.say("stopping the application and the proxy")
    host.stop_serving()
    safety = None
    if host.configured():
        proc.say("safety backup of the current state")
        result = host.safety_backup()
        if result["result"] != "ok":
            host.discard_staging(restart=True)
            journal.clear()
            raise Failed(f"the safety backup failed ({result['message']}); nothing on this host was changed")
        safety = result["run"]
    journal.write(phase="swapping", safety=safety)
    kept = f" (the state before it is safety backup {safety})" if safety else ""
    try:
        proc.say("swapping in the restored database, sites/, TLS state and configuration")
        host.swap()
        proc.say("starting the stack")
        host.start()
    except BaseException as problem:
        why = str(problem) or type(problem).__name__
        proc.say(f"the restore failed ({why}): rolling back")
        try:
            host.roll_back()
        except Exception as second:
            raise Failed(
                f"restoring backup {chosen.run} failed ({why}) and so did the roll-back ({second}); "
                f"run the restore again, or restore the safety backup {safety}"
            ) from None
        journal.clear()
        raise Failed(
            f"restoring backup {chosen.run} failed ({why}); rolled back: the host is as before the restore{kept}"
        ) from None
    journal.write(phase="committing")
    host.commit()
    journal.clear()
    return {
        "result": "ok", "run": chosen.run, "safety": safety, "host": chosen.host,
        "message": f"backup {chosen.run} restored{kept}",
    }  # fmt: skip


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


class RestoreHost:
    """The real host behind `Host`: Compose, the database container and the data directories."""

    def __init__(self, settings: Settings, repo: Repository) -> None:
        self.settings = settings
        self.layout = settings.layout
        self.repo = repo
        self.site = Site(settings)
        self.db = self.site.db
        self.scratch = SCRATCH.format(self.db.name)
        self.before = BEFORE.format(self.db.name)

    def configured(self) -> bool:
        return self.site.configured()

    def directories(self) -> list[Path]:
        return [Path(path) for path in self.site.paths()]

    def check_space(self, needed: int) -> None:
        places = [*self.directories(), Path(self.site.stack.docker.volume_path("db"))]
        for place in places:
            free = free_bytes(place.parent)
            if free < needed:
                raise Refused(
                    f"the restore needs {needed // 2**20} MiB free beside {place} (the backup's size plus "
                    f"{self.settings.backup.restore_space_margin}%), and there are {free // 2**20} MiB: "
                    "nothing was changed"
                )

    def stage(self, files_snapshot: str, db_snapshot: str) -> None:
        for live in self.directories():
            root = swap.staging_root(live)
            self.repo.restore_to(files_snapshot, root, str(live))
            restored = root / str(live).lstrip("/")
            if not restored.is_dir():
                raise Failed(f"backup snapshot {files_snapshot} does not hold {live}")
            swap.finish_staging(live, restored)
        self._keep_host_own(swap.sibling(Path(self.layout.config_dir), "new"))
        self.db.load_into(self.scratch, self.repo.dump(db_snapshot, f"/{self.db.name}.sql"))
        if self.db.other_objects(self.scratch):
            raise Failed("the backup's database has views, triggers, routines or events, which a restore cannot swap")
        self._verify(files_snapshot)

    def _verify(self, files_snapshot: str) -> None:
        """The staged copy against the backup's manifest: the scratch database dumped again must hold the
        tables and rows the backup had, the staged sites/ its documents. A run from before manifests has none."""
        read = self.repo.dump(files_snapshot, self.layout.backup_manifest, quiet=True)
        assert read.stdout is not None
        text = read.stdout.read()
        if read.wait() != 0:
            proc.say("this backup has no manifest: its tables and documents are not verified")
            return
        expected = json.loads(text)
        sites = swap.sibling(Path(self.site.stack.docker.volume_path("sites")), "new")
        compared = manifest.compare(expected, self.db.digest(self.scratch), manifest.documents(sites))
        if compared["problems"]:
            raise Failed(f"the backup does not match its manifest: {'; '.join(compared['problems'][:5])}")
        proc.say(f"verified against the manifest: {compared['tables']} tables, {compared['documents']} documents")

    def _keep_host_own(self, staged_config: Path) -> None:
        """The staged config directory gets this host's agent settings and own secrets, whatever the backup held."""
        config = Path(self.layout.config_dir)
        settings_dir = Path(self.layout.settings_dir)
        target = staged_config / settings_dir.relative_to(config)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(settings_dir, target, symlinks=True)
        for own in host_own_files(self.layout):
            staged = staged_config / own.relative_to(config)
            staged.unlink(missing_ok=True)
            if own.exists():
                staged.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                shutil.copy2(own, staged)

    def stop_serving(self) -> None:
        services = self.layout.services
        self.site.stack.docker.compose("stop", services["app"], services["proxy"], what="stop the application")

    def safety_backup(self) -> dict[str, Any]:
        """Into the repository being read, as this host (also when the backup restored is another host's)."""
        mine = Repository(self.layout, self.settings.backup, self.repo.passphrase_file)
        return take(mine, self.site, safety=True, retention=False)

    def swap(self) -> None:
        self.db.create_database(self.db.name)  # a host launched --empty may have none: RENAME needs the schema
        self.db.create_database(self.before)
        self.db.rename_tables([(self.db.name, self.before), (self.scratch, self.db.name)])
        for live in self.directories():
            swap.swap(live)
        self._adopt_app_password()

    def _adopt_app_password(self) -> None:
        """The application's database user gets the password now in the secrets (sites/ holds it too)."""
        stack = self.site.stack
        self.db.set_user_password(stack.settings.db_user, files.read_secret(self.layout.secret("db")))
        stack.write_env()

    def start(self) -> None:
        self.site.stack.start(timeout=self.settings.backup.restore_timeout)

    def commit(self) -> None:
        for live in self.directories():
            swap.commit(live)
        self.db.drop_database(self.before)
        self.db.drop_database(self.scratch)

    def roll_back(self) -> None:
        with contextlib.suppress(Failed):  # a stack that is down already needs no stopping
            self.stop_serving()
        for live in self.directories():
            swap.roll_back(live)
        if self.db.exists(self.scratch) and self.db.tables(self.scratch):
            pass  # the tables were never swapped
        elif self.db.exists(self.before):
            self.db.create_database(self.scratch)
            self.db.create_database(self.db.name)
            self.db.rename_tables([(self.db.name, self.scratch), (self.before, self.db.name)])
        self.db.drop_database(self.scratch)
        self.db.drop_database(self.before)
        self._adopt_app_password()
        self.start()

    def discard_staging(self, *, restart: bool) -> None:
        for live in self.directories():
            swap.roll_back(live)
        self.db.drop_database(self.scratch)
        if restart:
            self.start()


def adopt_repository(settings: Settings, repo: Repository) -> str | None:
    """After a restore read with another passphrase: let this host's own passphrase open that repository
    too (restic key add), so its next backups go there; the notice, or None when it already could."""
    own = Repository(settings.layout, settings.backup)
    if repo.passphrase_file == own.passphrase_file or own.state() == "ok":
        return None
    repo.add_key(own.passphrase_file)
    return f"this host's passphrase now opens {repo.location} too (a key was added)"
