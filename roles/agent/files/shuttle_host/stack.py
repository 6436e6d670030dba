"""The compose stack on this host: its secrets, its env file, starting it and knowing when it is ready.

The stack role converges a host through these (`shuttle-host stack ...`), and a restore and a first
boot use the same functions, so the three cannot drift: the secrets are generated on the host and
never leave it (Ansible no longer reads them to template the env file), and one readiness rule
(`readiness`) decides whether the stack came up.
"""

from __future__ import annotations

from typing import Any

from shuttle_host import files, netinfo, proc, readiness
from shuttle_host.database import Database
from shuttle_host.docker import Docker
from shuttle_host.errors import Failed
from shuttle_host.settings import Layout, Settings, StackSettings


class Stack:
    """One host's compose project, as its settings describe it."""

    def __init__(self, settings: Settings, docker: Docker | None = None) -> None:
        self.layout: Layout = settings.layout
        self.settings: StackSettings = settings.stack
        self.docker = docker or Docker(self.layout, self.settings.compose)

    # --- secrets and the env file ----------------------------------------------------------------

    def secret_keys(self) -> list[str]:
        """The layout's secrets the stack's env file holds, in the env file's order."""
        return list(self.settings.env_secrets.values())

    def ensure_secrets(self) -> list[str]:
        """Generate the stack's secrets that do not exist yet; the names of those created."""
        return [
            self.layout.secrets[key]
            for key in self.secret_keys()
            if files.create_secret(self.layout.secret(key), files.new_secret())
        ]

    def env_text(self) -> str:
        """The compose env file: the project name and each secret the compose file interpolates."""
        lines = [
            "# Managed by Shuttle (the host agent). Secrets: root only.",
            f"COMPOSE_PROJECT_NAME={self.layout.project}",
            f"MANUAL_SETUP={'yes' if self.manual_setup() else 'no'}",
        ]
        for variable, key in self.settings.env_secrets.items():
            path = self.layout.secret(key)
            try:
                lines.append(f"{variable}={files.read_secret(path)}")
            except FileNotFoundError:
                raise Failed(f"the secret {path} is missing: the env file cannot be written") from None
        return "\n".join(lines) + "\n"

    def manual_setup(self) -> bool:
        """OpenEMR is left unconfigured only in empty mode and only while its database has no tables: once a
        restore has brought them, the site runs as a full one (the image then upgrades it and locks setup)."""
        if self.settings.mode != "empty":
            return False
        try:
            return not Database(self.docker, self.settings.db_name).has_tables()
        except Failed:  # no database container yet (a first launch): nothing is configured
            return True

    def write_env(self) -> bool:
        """Write the env file from the secrets on this host; True when it changed."""
        return files.write_atomic(self.layout.env_file, self.env_text(), 0o600)

    # --- running -----------------------------------------------------------------------------------

    def services(self) -> list[readiness.Service]:
        """Every service of the project with its container's state (services without one: missing)."""
        containers = self.docker.containers()
        names = list(self.layout.services.values())
        names += sorted(set(containers) - set(names))
        return [readiness.from_inspect(name, containers.get(name)) for name in names]

    def _fingerprint(self) -> dict[str, tuple[str, str]]:
        containers = self.docker.containers()
        return {
            name: (info.get("Id", ""), (info.get("State") or {}).get("StartedAt", ""))
            for name, info in containers.items()
        }

    def up(self) -> bool:
        """`compose up --detach --remove-orphans`; True when a container was created, replaced or started."""
        before = self._fingerprint()
        self.docker.compose("up", "--detach", "--remove-orphans", what="start the stack")
        return self._fingerprint() != before

    def wait(self, timeout: float | None = None) -> readiness.Verdict:
        """Wait until the stack is ready or failed, by the one readiness rule."""
        return readiness.wait(
            self.services,
            timeout=self.settings.ready_timeout if timeout is None else timeout,
            interval=self.settings.ready_interval,
            max_restarts=self.settings.max_restarts,
        )

    def report(self, verdict: readiness.Verdict) -> dict[str, Any]:
        """The verdict as JSON, with the last log lines of every service that is not ready."""
        out: dict[str, Any] = {
            "verdict": verdict.kind,
            "services": {service.name: service.as_dict() for service in verdict.services},
            "problem": verdict.problem() if not verdict.ready else None,
        }
        out["logs"] = {
            service.name: self.docker.logs(service.name, self.settings.log_tail)
            for service in [*verdict.failed, *verdict.waiting]
            if service.state != "missing"
        }
        return out

    def start(self, timeout: float | None = None) -> None:
        """Up, then wait; Failed naming the services that did not become ready."""
        self.up()
        verdict = self.wait(timeout)
        if not verdict.ready:
            state = "failed" if verdict.kind == "failed" else "did not become ready in time"
            raise Failed(f"the stack {state}: {verdict.problem()}")

    def check_compose(self, candidate: str) -> None:
        """Refuse a compose file Compose cannot read with this host's env file (a role's `validate:`)."""
        argv = [*self.docker.compose_argv_for(candidate), "--env-file", str(self.layout.env_file), "config", "--quiet"]
        proc.run(argv, what=f"compose file {candidate}", cwd=self.layout.compose_dir)

    def reload_proxy(self) -> None:
        proxy = self.layout.services["proxy"]
        self.docker.compose("exec", "-T", proxy, *self.settings.proxy_reload, what="reload the proxy")

    def url(self, domain: str | None = None) -> str:
        """Where a browser reaches OpenEMR: the domain, else this host's first address."""
        name = domain or self.settings.domain or next(iter(netinfo.addresses()), "") or netinfo.hostname()
        return f"https://{name}/"
