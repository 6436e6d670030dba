"""The compose project as Docker sees it: its containers by service, its volumes, and Compose itself.

Containers are found by the labels Compose puts on them (project and service), never by container
name, so a project renamed in the layout or a container recreated under a new name is still found.
Compose is the v2 plugin (`docker compose`) when it answers, else Debian 12's docker-compose v1,
unless the stack's settings pin one.
"""

from __future__ import annotations

import json
import shutil
from functools import cached_property
from typing import Any

from shuttle_host import proc
from shuttle_host.errors import Failed
from shuttle_host.settings import Layout

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class Docker:
    """Docker calls about one compose project."""

    def __init__(self, layout: Layout, compose: str = "auto") -> None:
        self.layout = layout
        self.flavor = compose

    def containers(self) -> dict[str, dict[str, Any]]:
        """Service -> `docker inspect` of its container (the first, for a scaled service); stopped ones too."""
        ids = proc.output(
            ["docker", "ps", "-aq", "--filter", f"label={PROJECT_LABEL}={self.layout.project}"],
            what="list the stack's containers",
        ).split()
        if not ids:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for info in json.loads(proc.output(["docker", "inspect", *ids], what="inspect the stack's containers")):
            service = ((info.get("Config") or {}).get("Labels") or {}).get(SERVICE_LABEL)
            if service and service not in found:
                found[service] = info
        return found

    def running(self, key: str) -> str:
        """The ID of the running container of the layout's service `key` (db, app, proxy)."""
        service = self.layout.services[key]
        ids = proc.output(
            ["docker", "ps", "-q", "--filter", f"label={PROJECT_LABEL}={self.layout.project}",
             "--filter", f"label={SERVICE_LABEL}={service}"],
            what=f"find the {service} container",
        ).split()  # fmt: skip
        if not ids:
            raise Failed(f"the {service} container of project {self.layout.project} is not running")
        return ids[0]

    def volume_path(self, key: str) -> str:
        """Where the layout's volume `key` lives on this host."""
        name = self.layout.volume(key)
        return proc.output(
            ["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", name], what=f"find the volume {name}"
        ).strip()

    @cached_property
    def compose_program(self) -> list[str]:
        """`docker compose` (the v2 plugin) or `docker-compose` (v1), by the settings or by what answers."""
        flavor = self.flavor
        if flavor == "auto":
            v2 = proc.run(["docker", "compose", "version", "--short"], what="look for Compose v2", check=False)
            flavor = "v2" if v2.returncode == 0 else "v1"
        if flavor == "v2":
            return ["docker", "compose"]
        if shutil.which("docker-compose") is None:
            raise Failed("Docker Compose is not installed (neither `docker compose` nor docker-compose)")
        return ["docker-compose"]

    def compose_argv_for(self, compose_file: str) -> list[str]:
        return [*self.compose_program, "-p", self.layout.project, "-f", compose_file]

    @property
    def compose_argv(self) -> list[str]:
        """The argv prefix that drives the project: the program, the project's name and its file."""
        return self.compose_argv_for(str(self.layout.compose_file))

    def compose(self, *args: str, what: str, timeout: float | None = None) -> str:
        """Run a Compose command in the project directory; its output (both streams) on success."""
        done = proc.run([*self.compose_argv, *args], what=what, cwd=self.layout.compose_dir, timeout=timeout)
        return done.stdout + done.stderr

    def logs(self, service: str, tail: int) -> list[str]:
        """The last `tail` log lines of a service, without terminal colour codes; [] when none can be read."""
        done = proc.run(
            [*self.compose_argv, "logs", "--no-color", "--tail", str(tail), service],
            what=f"read the {service} logs", cwd=self.layout.compose_dir, check=False, timeout=60,
        )  # fmt: skip
        return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
