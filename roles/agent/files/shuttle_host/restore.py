"""Restoring a backup: the chosen run replaces the database, sites/, Shuttle's config and the TLS state.

The order is the point, and `restore` is written as that order over a host object, so it is tested
without a host:

1. open the repository and pick the run (nothing changes if either fails: exit 2);
2. take a safety backup of the current state, when there is one (restorable later by its ID);
3. restore the run's files into a staging directory: a repository that fails here touches nothing live;
4. stop the application and the proxy; load the database; swap the staged files in (this host's own
   agent settings stay); remove the staging directory;
5. give the database users the restored passwords and rewrite the env file from the restored secrets;
6. start the stack and wait for it by the one readiness rule.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

from shuttle_host import filesync, proc, runs
from shuttle_host.backup import Site, take
from shuttle_host.errors import Failed
from shuttle_host.restic import Repository
from shuttle_host.settings import Settings


class Host(Protocol):
    def configured(self) -> bool: ...
    def safety_backup(self) -> dict[str, Any]: ...
    def paths(self) -> list[str]: ...
    def stage(self, snapshot: str, paths: list[str]) -> Path: ...
    def stop_serving(self) -> None: ...
    def load_database(self, snapshot: str) -> None: ...
    def swap_in(self, staging: Path, paths: list[str]) -> None: ...
    def discard(self, staging: Path) -> None: ...
    def adopt_secrets(self) -> None: ...
    def start(self) -> None: ...


class Repo(Protocol):
    location: str

    def open(self, *, create: bool) -> None: ...
    def runs(self) -> dict[str, runs.Run]: ...


def restore(repo: Repo, host: Host, wanted: str) -> dict[str, Any]:
    """Restore the run `wanted` names (see runs.pick) onto `host`, in the order of the module docstring."""
    repo.open(create=False)
    chosen = runs.pick(repo.runs(), wanted, repo.location)
    safety = None
    if host.configured():
        proc.say("safety backup of the current state first")
        result = host.safety_backup()
        if result["result"] != "ok":
            raise Failed(f"the safety backup failed: {result['message']}")
        safety = result["run"]
    proc.say(f"restoring backup {chosen.run}: reading its files")
    paths = host.paths()
    staging = host.stage(chosen.parts["files"], paths)
    try:
        proc.say("stopping the application; loading the database")
        host.stop_serving()
        host.load_database(chosen.parts["db"])
        proc.say("replacing sites/, the TLS state and Shuttle's configuration")
        host.swap_in(staging, paths)
    finally:
        host.discard(staging)
    host.adopt_secrets()
    proc.say("starting the stack")
    host.start()
    message = f"backup {chosen.run} restored" + (f" (the state before it is safety backup {safety})" if safety else "")
    return {"result": "ok", "run": chosen.run, "safety": safety, "message": message}


class RestoreHost:
    """The real host behind `Host`: Compose, the database container and the data directories."""

    def __init__(self, settings: Settings, repo: Repository) -> None:
        self.settings = settings
        self.layout = settings.layout
        self.repo = repo
        self.site = Site(settings)

    def configured(self) -> bool:
        return self.site.configured()

    def safety_backup(self) -> dict[str, Any]:
        return take(self.repo, self.site, safety=True)

    def paths(self) -> list[str]:
        return self.site.paths()

    def stage(self, snapshot: str, paths: list[str]) -> Path:
        staging = Path(self.layout.backup_state_dir) / "restore-staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, mode=0o700)
        self.repo.restore_to(snapshot, staging)
        missing = [path for path in paths if not (staging / path.lstrip("/")).is_dir()]
        if missing:
            raise Failed(f"backup snapshot {snapshot} does not hold {', '.join(missing)}")
        return staging

    def stop_serving(self) -> None:
        services = self.layout.services
        self.site.stack.docker.compose("stop", services["app"], services["proxy"], what="stop the application")

    def load_database(self, snapshot: str) -> None:
        self.site.db.drop()
        self.site.db.load(self.repo.dump(snapshot, f"/{self.site.db.name}.sql"))

    def swap_in(self, staging: Path, paths: list[str]) -> None:
        """Each live path's content becomes the staged one's; this host's agent settings are kept."""
        keep = (Path(self.layout.settings_dir),)
        for path in paths:
            filesync.replace_content(Path(path), staging / path.lstrip("/"), keep=keep)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def adopt_secrets(self) -> None:
        """The restored secrets are the old host's: the database users get those passwords, the env file too."""
        layout, stack = self.layout, self.site.stack.settings
        read = {key: layout.secret(key).read_text().strip() for key in ("db_root", "db")}
        self.site.db.set_passwords(root=read["db_root"], user=stack.db_user, password=read["db"])
        self.site.stack.write_env()

    def start(self) -> None:
        self.site.stack.start(timeout=self.settings.backup.restore_timeout)
