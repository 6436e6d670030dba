"""Taking a backup: one run of two snapshots, the database streamed and the files, or nothing at all.

The database part is `mariadb-dump --single-transaction` streamed into restic through this process
(no copy on the host's disk; the run's manifest digests it on the way, manifest.py); the files part
is OpenEMR's sites/ volume, the proxy's TLS state, Shuttle's config directory and the manifest (a
backup's database and sites/ are one matched set: sites/ holds the keys that decrypt data in the
database). A run that fails or is killed midway is removed, at the latest before the
next run starts, so every run `list` shows can be restored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shuttle_host import files, manifest, proc, runs, sitekeys
from shuttle_host.database import Database
from shuttle_host.errors import Failed, Refused
from shuttle_host.restic import Repository
from shuttle_host.settings import Layout, Settings
from shuttle_host.stack import Stack

#: The layout's secrets that stay this host's own: left out of backups, and kept by a restore.
HOST_OWN_SECRETS = ("db_root", "backup_passphrase", "backup_ssh_key", "backup_s3_secret")


def host_own_files(layout: Layout) -> list[Path]:
    """Files under the config directory that belong to this host, not to the clinic's data: the keys to the
    repository (a backup holding them would hold the means to delete itself) and the database's root password."""
    found = [layout.secret(key) for key in HOST_OWN_SECRETS]
    found.append(layout.secret("backup_ssh_key").with_name(layout.secrets["backup_ssh_key"] + ".pub"))
    found.append(Path(layout.backup_known_hosts))
    return found


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

    def images(self) -> dict[str, dict[str, str]]:
        """Each service's image: the reference it was started from and the image ID it runs."""
        return {
            service: {"image": (info.get("Config") or {}).get("Image", ""), "id": info.get("Image", "")}
            for service, info in self.stack.docker.containers().items()
        }

    def sites(self) -> Path:
        return Path(self.stack.docker.volume_path("sites"))

    def canary(self) -> dict[str, Any]:
        """A value the running app encrypted with its site keys (sitekeys.py), or why there is none: a backup
        is still taken, and a drill of it says the encryption could not be verified."""
        try:
            return sitekeys.canary(self.stack.docker, self.sites())
        except (Failed, OSError) as problem:
            proc.say(f"no encryption canary in this backup: {problem}")
            return {"error": str(problem)}

    def write_manifest(self, run_id: str, tables: dict[str, dict[str, Any]], canary: dict[str, Any]) -> str:
        """The run's manifest (manifest.py), where the files part picks it up; its path."""
        path = Path(self.layout.backup_manifest)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        files.write_json(path, {**manifest.build(run_id, tables, self.sites(), self.images()), "canary": canary})
        return str(path)

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


def take(repo: Repository, site: Site, *, safety: bool, retention: bool = True) -> dict[str, Any]:
    """One run: the database part, then the files part, then retention (not for a restore's safety
    backup: nothing is forgotten while a restore runs). A failed run leaves nothing."""
    if not site.configured():
        return {"result": "skipped", "message": "OpenEMR is not configured yet: nothing to back up"}
    repo.open()
    remove_incomplete(repo)
    run_id = runs.new_run_id()
    tags = [option for tag in [*runs.host_tags(repo.host), f"{runs.RUN_TAG}{run_id}"] for option in ("--tag", tag)]
    if safety:
        tags += ["--tag", runs.SAFETY_TAG]
    try:
        canary = site.canary()  # before the dump: a key the app makes for it is then in both parts
        proc.say(f"run {run_id}: database")
        dump = site.db.dump()
        assert dump.stdout is not None and dump.stderr is not None
        digest = manifest.DumpDigest()
        saved = repo.backup_stream(
            f"{site.db.name}.sql", dump.stdout, [*tags, "--tag", f"{runs.PART_TAG}db"], digest.feed
        )
        dump.stdout.close()
        dump_errors = dump.stderr.read().decode(errors="replace")
        if dump.wait() != 0:
            raise Failed(f"the database dump failed: {proc.last_lines(dump_errors)}")
        if saved.returncode != 0:
            raise Failed(f"restic backup (database): {proc.last_lines(saved.stderr)}")
        proc.say(f"run {run_id}: files")
        written = site.write_manifest(run_id, digest.tables(), canary)
        own = [str(path) for path in host_own_files(site.layout)]
        repo.backup_paths([*site.paths(), written], [*tags, "--tag", f"{runs.PART_TAG}files"], exclude=own)
    except BaseException:
        with contextlib.suppress(Exception):
            repo.forget(repo.runs().get(run_id, runs.Run(run_id, "", None)).ids)
        raise
    message = f"backup {run_id} saved"
    if retention:
        proc.say(f"run {run_id}: retention and prune")
        gone = repo.apply_retention(pinned=[])
        message += f"; retention removed {len(gone)} older" if gone else ""
    return {"result": "ok", "run": run_id, "safety": safety, "message": message}


RECOVERY_LABEL = "shuttle-recovery"


def init_repository(conf: Settings, recovery_file: str | None = None) -> dict[str, Any]:
    """`backup init`, run by a launch (and by a first boot): the one place a repository is created.

    state ok: it opens with this host's passphrase; created: there was none; joined: this host's passphrase
    did not open it, the recovery key did, and this host's key was added (hosts sharing a recovery key
    share a repository); foreign: it exists and neither opens it; unreachable: it cannot be asked yet (an
    SFTP server that does not know this host's key, a network that is down): the next launch tries again.
    With `recovery_file` (the controller's recovery key, in tmpfs), the key is added where it does not open
    the repository yet, so that file opens every backup of this host and never needs to stay here."""
    repo = Repository(conf.layout, conf.backup)
    recovery = Repository(conf.layout, conf.backup, recovery_file) if recovery_file else None
    result: dict[str, Any]
    try:
        state = repo.state()
        if state == "missing":
            repo.init()
            result = {"state": "created", "changed": True, "message": f"created the backup repository {repo.location}"}
        elif state == "wrong-passphrase":
            result = _join(repo, recovery)
        else:
            result = {"state": "ok", "changed": False, "message": f"the backup repository {repo.location} opens"}
        result["recovery_added"] = False
        # A joined repository was just opened with the recovery key: it needs no second look.
        if recovery is not None and result["state"] in ("created", "ok") and recovery.state() != "ok":
            repo.add_key(recovery.passphrase_file, RECOVERY_LABEL)
            result |= {"changed": True, "recovery_added": True}
    except Failed as problem:  # restic reports an unknown host or a refused login as "no repository" too
        return {"state": "unreachable", "changed": False, "recovery_added": False, "message": str(problem)}
    return result


def _join(repo: Repository, recovery: Repository | None) -> dict[str, Any]:
    if recovery is not None and recovery.state() == "ok":
        recovery.add_key(repo.passphrase_file)
        return {
            "state": "joined",
            "changed": True,
            "message": f"this host joined the backup repository {repo.location} (opened with the recovery key)",
        }
    return {
        "state": "foreign", "changed": False,
        "message": f"the repository {repo.location} exists but this host's passphrase does not open it",
    }  # fmt: skip


def record(settings: Settings, status: dict[str, Any]) -> None:
    """The last run's result, where `status` and `backup --list` read it."""
    path = Path(settings.layout.backup_record)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.write_json(path, status)


def run(settings: Settings, *, safety: bool, passphrase_file: str | None) -> dict[str, Any]:
    """`backup run`: take a run under the host's lock and record how it went, whatever happened."""
    status: dict[str, Any] = {"started": now()}
    if passphrase_file is None:
        record(settings, {**status, "result": "running", "message": "a backup is running"})
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


def stopped(settings: Settings, path: Path, service_result: str) -> bool:
    """A unit's ExecStopPost: a record still saying "running" belongs to a run that was killed or timed out
    (systemd's $SERVICE_RESULT says which) and becomes a failed one. True when it did."""
    last = files.read_json(path)
    if not isinstance(last, dict) or last.get("result") != "running":
        return False
    why = {"timeout": "it ran past its time limit"}.get(service_result, f"systemd: {service_result or 'unknown'}")
    files.write_json(path, {**last, "result": "failed", "message": f"the run was stopped before it finished ({why})",
                            "finished": now()})  # fmt: skip
    return True


def listing(settings: Settings, passphrase_file: str | None, host: str | None = None) -> dict[str, Any]:
    """`backup list`: the repository, its state, this host's restorable runs and the last run's record."""
    repo = Repository(settings.layout, settings.backup, passphrase_file, host)
    state = repo.state()
    backups = [run.as_dict() for run in runs.complete(repo.runs())] if state == "ok" else []
    return {
        "repository": repo.location,
        "repository_state": state,
        "host": repo.host,
        "last_run": files.read_json(Path(settings.layout.backup_record)),
        "last_check": files.read_json(Path(settings.layout.check_record)),
        "backups": backups,
    }


def check(settings: Settings, percent: int | None, passphrase_file: str | None) -> dict[str, Any]:
    """`backup check`: verify the repository, recording the result where `status` reads it."""
    read = settings.backup.check_read_percent if percent is None else percent
    result: dict[str, Any] = {"started": now(), "read_percent": read}
    path = Path(settings.layout.check_record)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.write_json(path, {**result, "result": "running", "message": "a check is running"})
    try:
        with exclusive(Path(settings.layout.backup_lock)):
            repo = Repository(settings.layout, settings.backup, passphrase_file)
            repo.open()
            repo.check(read)
        result |= {"result": "ok", "message": f"repository check passed ({read}% of the data read)"}
    except (Refused, Failed) as problem:
        result |= {"result": "failed", "message": str(problem)}
    except BaseException as problem:
        result |= {"result": "failed", "message": f"{type(problem).__name__}: {problem}"}
    result["finished"] = now()
    files.write_json(path, result)
    return result
