"""`status`: the state of this host as one JSON object, changing nothing.

The compose project's services (state, health, restarts, image, and whether each is ready by the one
readiness rule), the OpenEMR admin login the app container runs with, the OpenEMR release the app runs and
the upgrade marker its site carries (the image migrates a site whose marker is older than its own), the
host's time zone, the OS, Docker and Compose versions, and the last backup's record. Container environments
hold secrets: only the admin's login name is taken from them, and nothing else of them is read into the report.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from shuttle_host import alerts, files, manifest, openemr, proc, readiness
from shuttle_host.errors import Failed
from shuttle_host.settings import Settings
from shuttle_host.stack import Stack


def _quiet(*argv: str) -> str | None:
    """A command's stdout, or None when it is missing or fails (the report says what is absent)."""
    if shutil.which(argv[0]) is None:
        return None
    done = proc.run(list(argv), what=argv[0], check=False, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def os_name(os_release: Path = Path("/etc/os-release")) -> str | None:
    for line in os_release.read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def time_zone(localtime: Path = Path("/etc/localtime")) -> str | None:
    """The zone /etc/localtime names (what timedatectl reports, without needing its D-Bus service)."""
    if localtime.is_symlink():
        return str(localtime.resolve()).split("/zoneinfo/", 1)[-1]
    return _quiet("timedatectl", "show", "--property=Timezone", "--value")


def admin_user(info: dict[str, Any] | None) -> str | None:
    """OE_USER of the app container: the login OpenEMR was set up with. No other variable is read."""
    for item in ((info or {}).get("Config") or {}).get("Env") or []:
        if item.startswith("OE_USER="):
            return str(item.split("=", 1)[1])
    return None


_VERSION_PART = re.compile(r"^\$v_(major|minor|patch|realpatch)\s*=\s*'([0-9]+)'", re.MULTILINE)


def release(version_php: str) -> str | None:
    """The release OpenEMR's version.php names (major.minor.patch, plus .realpatch for a patch release)."""
    parts = dict(_VERSION_PART.findall(version_php))
    if not {"major", "minor", "patch"} <= parts.keys():
        return None
    numbers = [parts["major"], parts["minor"], parts["patch"]]
    return ".".join(numbers + ([parts["realpatch"]] if parts.get("realpatch", "0") != "0" else []))


def openemr_versions(stack: Stack, app: dict[str, Any] | None) -> dict[str, str | None]:
    """What the app container (its `docker inspect`) runs, read from its version.php, and the site's upgrade
    marker (sites/default/docker-version); None for what cannot be read (no running app, no marker yet)."""
    found: dict[str, str | None] = {"version": None, "docker_version": None}
    if not app or (app.get("State") or {}).get("Status") != "running":
        return found
    try:
        found["docker_version"] = manifest.docker_version(Path(stack.docker.volume_path("sites")))
    except Failed:
        return found
    text = _quiet("docker", "exec", str(app["Id"]), "cat", f"{openemr.OE_ROOT}/version.php")
    found["version"] = release(text) if text else None
    return found


def report(settings: Settings) -> dict[str, Any]:
    layout = settings.layout
    out: dict[str, Any] = {
        "os": os_name(),
        "timezone": time_zone(),
        "docker": _quiet("docker", "version", "--format", "{{.Server.Version}}"),
        "compose": None,
        "services": {},
        "images": {},
        "admin_user": None,
        "openemr": {"version": None, "docker_version": None},
        "last_backup": files.read_json(Path(layout.backup_record)),
        "last_check": files.read_json(Path(layout.check_record)),
        "last_restore": files.read_json(Path(layout.restore_record)),
        "last_drill": files.read_json(Path(layout.drill_record)),
        # A restore that did not finish (its unit's stop rolls it back; so does the next restore or backup).
        "restore_unfinished": files.read_json(Path(layout.restore_journal)),
        "alerts": alerts.active(settings),
        "ready": False,
        "problem": None,
    }
    if not layout.compose_file.is_file():
        out["problem"] = f"the stack is not installed ({layout.compose_file} is missing)"
        return out
    if out["docker"] is None:
        out["problem"] = "the Docker engine does not answer"
        return out
    stack = Stack(settings)
    try:
        program = stack.docker.compose_program
        containers = stack.docker.containers()
    except Failed as problem:
        out["problem"] = str(problem)
        return out
    out["compose"] = _quiet(*program, "version", "--short")
    names = list(layout.services.values()) + sorted(set(containers) - set(layout.services.values()))
    services = [readiness.from_inspect(name, containers.get(name)) for name in names]
    verdict = readiness.verdict(services, max_restarts=stack.settings.max_restarts)
    for service in services:
        out["services"][service.name] = {
            **service.as_dict(),
            "ready": readiness.judge(service, stack.settings.max_restarts, None) == "ready",
        }
        out["images"][service.name] = service.image
    app = containers.get(layout.services["app"])
    out["admin_user"] = admin_user(app)
    out["openemr"] = openemr_versions(stack, app)
    out["ready"] = verdict.ready
    out["problem"] = None if verdict.ready else verdict.problem()
    return out
