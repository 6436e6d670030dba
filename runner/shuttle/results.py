"""Per-host outcome of a run and the exit code it maps to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shuttle.errors import EXIT_BAD_INPUT, EXIT_HOST_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNREACHABLE

#: Host statuses, worst first when a host collects more than one.
_RANK = {"failed": 4, "unreachable": 3, "auth_failed": 2, "rejected": 2, "ok": 0}


@dataclass
class HostResult:
    """What happened on one host: task counts and, when it did not succeed, why."""

    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    status: str = "ok"
    message: str | None = None
    #: The validated settings this host was given (launch, bake), secrets shown as '**********'.
    settings: dict[str, Any] | None = None

    def record(self, status: str, message: str | None) -> None:
        """Keep the worst status seen on this host, with the message that explains it."""
        if _RANK.get(status, 0) > _RANK.get(self.status, 0):
            self.status, self.message = status, message

    def count(self, stats: dict[str, dict[str, int]]) -> None:
        """Take the task counts from Ansible's own recap, so they match what `ansible-playbook` reports."""
        for mine, theirs in (("ok", "ok"), ("changed", "changed"), ("failed", "failures"),
                             ("unreachable", "dark"), ("skipped", "skipped")):  # fmt: skip
            setattr(self, mine, int((stats.get(theirs) or {}).get(self.host, 0)))


@dataclass
class RunResult:
    """The outcome of one run across all its hosts."""

    verb: str
    hosts: dict[str, HostResult] = field(default_factory=dict)
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    #: Per host, what the backup tool reported (`shuttle backup`): its backups and last run.
    backups: dict[str, Any] = field(default_factory=dict)
    #: Per host, what `shuttle status` found: stack readiness, admin user, time zone, versions, last backup.
    status: dict[str, Any] = field(default_factory=dict)
    log: str | None = None

    def host(self, name: str) -> HostResult:
        return self.hosts.setdefault(name, HostResult(host=name))

    @property
    def exit_code(self) -> int:
        """The README's exit codes: a failed host outranks an unreachable one, which outranks bad input."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        statuses = {result.status for result in self.hosts.values()}
        if "failed" in statuses:
            return EXIT_HOST_FAILED
        if "unreachable" in statuses:
            return EXIT_UNREACHABLE
        if statuses & {"auth_failed", "rejected"}:
            return EXIT_BAD_INPUT
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "verb": self.verb,
            "exit_code": self.exit_code,
            "interrupted": self.interrupted,
            "hosts": {name: asdict(result) for name, result in self.hosts.items()},
            "warnings": self.warnings,
            "notices": self.notices,
            **({"backups": self.backups} if self.backups else {}),
            **({"status": self.status} if self.status else {}),
            "log": self.log,
        }
