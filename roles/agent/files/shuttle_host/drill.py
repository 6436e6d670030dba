"""The restore drill: a backup restored beside the live site, started, checked, and thrown away.

A drill proves what only a restore proves, without touching the live site: the chosen run's files part
is restored into a scratch directory and its database dump loaded into a scratch compose project (its
own volumes and an internal network, no published ports) running the host's current images. The
loaded database is dumped again and compared with the run's manifest table by table, the documents
are hashed and compared, and OpenEMR is started on the restored sites/ and database: it must answer
its login page and decrypt the value it encrypted with its site keys when the backup was taken
(sitekeys.py), which holds only when sites/ and the database are one matched set. The scratch
project and directory are removed however the drill ends (and before the next one starts, should a
drill be killed). The result is recorded where `status` reads it.

`drill` is the order of those steps over a host object, so it is tested without a host.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from shuttle_host import files, manifest, proc, runs, sitekeys
from shuttle_host.backup import exclusive, now
from shuttle_host.database import Database
from shuttle_host.docker import PROJECT_LABEL, Docker
from shuttle_host.errors import Failed, Refused
from shuttle_host.restic import Repository
from shuttle_host.settings import Settings


class Host(Protocol):
    def clear(self) -> None: ...
    def check_space(self, needed: int) -> None: ...
    def stage(self, files_snapshot: str) -> dict[str, Any] | None: ...
    def load(self, db_snapshot: str) -> dict[str, dict[str, Any]]: ...
    def documents(self) -> dict[str, str]: ...
    def start_app(self) -> None: ...
    def decrypts(self, canary: dict[str, Any]) -> bool: ...


def drill(repo: runs.Source, host: Host, wanted: str, *, margin: int = 0) -> dict[str, Any]:
    """Drill the run `wanted` names (runs.pick): result ok only when every check passed; `problems` says,
    one line each, what could not be verified. Refused (nothing done) when the run or the space is lacking."""
    host.clear()
    repo.open()
    chosen = runs.pick(repo.runs(), wanted, repo.location, others=runs.hosts_in(repo.snapshots()))
    size = sum(repo.restore_size(chosen.parts[part]) for part in runs.PARTS)
    host.check_space(size + size * margin // 100)
    problems: list[str] = []
    checked: dict[str, Any] = {"manifest": False}
    try:
        proc.say(f"drill of backup {chosen.run}: restoring its files into the scratch directory")
        expected = _step(problems, "the files part could not be restored", host.stage, chosen.parts["files"])
        proc.say("loading its database into the scratch project")
        tables = _step(problems, "the database part could not be loaded", host.load, chosen.parts["db"])
        if expected is not None and tables is not None:
            compared = manifest.compare(expected, tables, host.documents())
            problems += compared.pop("problems")
            checked |= {"manifest": True, **compared}
        elif tables is not None:
            problems.append("the backup has no manifest: its tables and documents cannot be verified")
        if not problems:
            proc.say("starting OpenEMR on the restored data")
            _step(problems, "OpenEMR did not start on the restored data", host.start_app)
            checked["app"] = not problems
        if not problems and expected is not None:
            problems += _decrypts(host, expected.get("canary") or {})
            checked["encryption"] = not problems
    finally:
        host.clear()
    result = "failed" if problems else "ok"
    if problems:
        message = f"drill of backup {chosen.run} failed: {'; '.join(problems[:5])}"
        message += f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    else:
        message = (
            f"drill of backup {chosen.run} passed: {checked.get('tables', 0)} tables, {checked.get('rows', 0)} rows"
            f" and {checked.get('documents', 0)} documents as backed up; OpenEMR answered on the restored data and"
            " decrypted what it had encrypted"
        )
    return {"result": result, "run": chosen.run, "checked": checked, "problems": problems, "message": message}


def _decrypts(host: Host, canary: dict[str, Any]) -> list[str]:
    """Problems with the data OpenEMR encrypted: the backup's canary must decrypt on the restored data."""
    if "ciphertext" not in canary:
        why = canary.get("error", "the backup has none")
        return [f"encrypted data could not be verified: no encryption canary ({why})"]
    problems: list[str] = []
    decrypted = _step(problems, "the encryption canary could not be read", host.decrypts, canary)
    if decrypted is False:
        problems.append("data encrypted with the site keys does not decrypt: sites/ and the database do not match")
    return problems


def _step(problems: list[str], what: str, step: Any, *args: Any) -> Any:
    try:
        return step(*args)
    except Failed as problem:
        problems.append(f"{what}: {problem}")
        return None


class DrillHost:
    """The real host behind `Host`: a scratch directory and a scratch compose project beside the live one."""

    def __init__(self, settings: Settings, repo: Repository) -> None:
        self.settings = settings
        self.layout = settings.layout
        self.repo = repo
        self.root = Path(self.layout.drill_dir)
        self.live = Docker(self.layout, settings.stack.compose)
        scratch = dataclasses.replace(self.layout, project=self.layout.drill_project, compose_dir=str(self.root))
        self.docker = Docker(scratch, settings.stack.compose)
        self.db = Database(self.docker, settings.stack.db_name)
        self.restored = self.root / "files"

    def _restored(self, path: str) -> Path:
        return self.restored / path.lstrip("/")

    def clear(self) -> None:
        """Remove the scratch project (found by its label, so a killed drill's leftovers go too) and directory."""
        label = f"label={PROJECT_LABEL}={self.layout.drill_project}"
        for kind in ("container", "volume", "network"):
            listing = ["docker", "ps", "-aq"] if kind == "container" else ["docker", kind, "ls", "-q"]
            listing += ["--filter", label]
            ids = proc.output(listing, what=f"list the drill's {kind}s").split()
            if ids:
                remove = ["docker", "rm", "-f"] if kind == "container" else ["docker", kind, "rm"]
                proc.run([*remove, *ids], what=f"remove the drill's {kind}s")
        shutil.rmtree(self.root, ignore_errors=True)

    def check_space(self, needed: int) -> None:
        volumes = Path(self.live.volume_path("db")).parent
        places = {"the drill's directory": self.root.parent, "Docker's volumes": volumes}
        for what, place in places.items():
            stat = shutil.disk_usage(place)
            if stat.free < needed:
                raise Refused(
                    f"the drill needs {needed // 2**20} MiB free for {what} ({place}: the backup's size plus "
                    f"{self.settings.backup.restore_space_margin}%), and there are {stat.free // 2**20} MiB"
                )

    def stage(self, files_snapshot: str) -> dict[str, Any] | None:
        """The whole files part under the scratch directory; the run's manifest, or None when it has none."""
        self.restored.mkdir(parents=True, mode=0o700)
        self.repo.run("restore", files_snapshot, "--target", str(self.restored))
        found = files.read_json(self._restored(self.layout.backup_manifest))
        if isinstance(found, dict) and found.get("version") != manifest.VERSION:
            raise Failed(f"its manifest is of version {found.get('version')!r}, this agent reads {manifest.VERSION}")
        return found if isinstance(found, dict) else None

    def sites(self) -> Path:
        return self._restored(self.live.volume_path("sites"))

    def _secret(self, key: str) -> str:
        return files.read_secret(self._restored(str(self.layout.secret(key))))

    def _image(self, key: str) -> str:
        info = self.live.containers().get(self.layout.services[key]) or {}
        image = (info.get("Config") or {}).get("Image")
        if not image:
            raise Failed(f"the live stack has no {key} container to take the image from")
        return str(image)

    def _compose(self) -> dict[str, Any]:
        """The scratch project: the live images, the restored sites/ mounted, an internal network only."""
        services, stack = self.layout.services, self.settings.stack
        return {
            "services": {
                services["db"]: {
                    "image": self._image("db"),
                    "command": ["--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"],
                    "environment": {"MARIADB_ROOT_PASSWORD": "${DB_ROOT_PASSWORD}"},
                    "volumes": [f"{self.layout.volumes['db']}:/var/lib/mysql"],
                    "networks": ["drill"],
                },
                services["app"]: {
                    "image": self._image("app"),
                    "environment": {
                        "MYSQL_HOST": services["db"],
                        "MYSQL_DATABASE": stack.db_name,
                        "MYSQL_ROOT_PASS": "${DB_ROOT_PASSWORD}",
                        "MYSQL_USER": stack.db_user,
                        "MYSQL_PASS": "${DB_PASSWORD}",
                        "OE_USER": stack.admin_user,
                        "OE_PASS": "${OE_ADMIN_PASSWORD}",
                        "MANUAL_SETUP": "no",
                    },
                    "volumes": [f"{self.sites()}:/var/www/localhost/htdocs/openemr/sites"],
                    "networks": ["drill"],
                },
            },
            "networks": {"drill": {"internal": True}},
            "volumes": {self.layout.volumes["db"]: {}},
        }

    def load(self, db_snapshot: str) -> dict[str, dict[str, Any]]:
        """The dump loaded into the scratch database, then dumped again: the digest of what the server holds."""
        env = {
            "DB_ROOT_PASSWORD": files.new_secret(),
            "DB_PASSWORD": self._secret("db"),
            "OE_ADMIN_PASSWORD": self._secret("admin"),
        }
        files.write_atomic(self.root / ".env", "".join(f"{name}={value}\n" for name, value in env.items()))
        files.write_json(self.root / "docker-compose.yml", self._compose())  # JSON is YAML to Compose
        self.docker.compose("up", "-d", self.layout.services["db"], what="start the drill's database")
        self._wait_healthy("db", "the drill's database")
        self.db.load_into(self.db.name, self.repo.dump(db_snapshot, f"/{self.db.name}.sql"))
        self.db.set_user_password(self.settings.stack.db_user, env["DB_PASSWORD"])
        return self.db.digest()

    def documents(self) -> dict[str, str]:
        return manifest.documents(self.sites())

    def start_app(self) -> None:
        """OpenEMR on the restored data, answering its login page (the live app's own health check)."""
        self.docker.compose("up", "-d", self.layout.services["app"], what="start the drill's OpenEMR")
        self._wait_healthy("app", "the drill's OpenEMR")

    def _wait_healthy(self, key: str, what: str) -> None:
        """Until the live service's own health check passes in the drill's container of that service (for the
        database: a TCP connection and InnoDB ready, not the socket of its first start's temporary server)."""
        info = self.live.containers().get(self.layout.services[key]) or {}
        test = ((info.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
        if test[:1] not in (["CMD"], ["CMD-SHELL"]):
            raise Failed(f"the live {key} service has no health check to ask the drill's copy with")
        command = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]

        def passes() -> bool:
            argv = ["docker", "exec", self.docker.running(key), *command]
            return proc.run(argv, what=f"check {what}", check=False, timeout=60).returncode == 0

        self._wait(what, passes)

    def decrypts(self, canary: dict[str, Any]) -> bool:
        return sitekeys.decrypts(self.docker, self.sites(), canary)

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.settings.stack.ready_timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except Failed as problem:
                last = str(problem)
            time.sleep(2)
        raise Failed(f"{what} was not ready after {self.settings.stack.ready_timeout}s{': ' + last if last else ''}")


def run(settings: Settings, wanted: str) -> dict[str, Any]:
    """`backup drill`: a drill under the host's lock (no backup or restore meanwhile), recorded however it ends."""
    path = Path(settings.layout.drill_record)
    status: dict[str, Any] = {"started": now()}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.write_json(path, {**status, "result": "running", "message": "a restore drill is running"})
    try:
        with exclusive(Path(settings.layout.backup_lock)):
            repo = Repository(settings.layout, settings.backup)
            status |= drill(repo, DrillHost(settings, repo), wanted, margin=settings.backup.restore_space_margin)
    except Refused as problem:
        status |= {"result": "refused", "message": str(problem)}
    except (Failed, KeyboardInterrupt) as problem:
        status |= {"result": "failed", "message": str(problem) or "interrupted"}
    except Exception as problem:  # a crash still leaves a record that says failed, and why
        status |= {"result": "failed", "message": f"{type(problem).__name__}: {problem}"}
    status["finished"] = now()
    files.write_json(path, status)
    proc.say(status["message"])
    return status
