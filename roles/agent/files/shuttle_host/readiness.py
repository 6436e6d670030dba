"""Whether the stack is ready: the one rule a launch, a restore, a first boot and `status` all apply.

Per service, from its container's state:

- failed: the container is gone from `running` for good (exited, dead), its health check says
  unhealthy, or it restarted `max_restarts` times since the look began (a crash loop);
- ready: running, and healthy (or without a health check);
- waiting: anything else (created, starting, restarting, health still starting, no container yet).

The stack is failed when any service is, ready when all are, else waiting. A wait ends at the first
ready or failed verdict, so a crash loop fails in seconds instead of after the whole timeout. A single
look (`status`) has no earlier look to count restarts from: it reports them, and judges the state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Service:
    """One compose service as its container shows it."""

    name: str
    state: str  # running, exited, restarting, created, dead, ... or "missing" (no container)
    health: str  # healthy, unhealthy, starting, or "none" (no health check)
    restarts: int
    container: str = ""
    image: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "health": self.health, "restarts": self.restarts, "image": self.image}

    def describe(self) -> str:
        return f"service {self.name} is {self.state} (health: {self.health}, restarts: {self.restarts})"


def from_inspect(name: str, info: Mapping[str, Any] | None) -> Service:
    """A service from its container's `docker inspect` (None: no container)."""
    if info is None:
        return Service(name, "missing", "none", 0)
    state = info.get("State") or {}
    return Service(
        name=name,
        state=str(state.get("Status", "unknown")),
        health=str((state.get("Health") or {}).get("Status", "none")),
        restarts=int(info.get("RestartCount") or 0),
        container=str(info.get("Id", "")),
        image=(info.get("Config") or {}).get("Image"),
    )


@dataclass(frozen=True)
class Verdict:
    """ready, waiting or failed, with the services that keep the stack from being ready."""

    kind: str
    services: list[Service]
    failed: list[Service] = field(default_factory=list)
    waiting: list[Service] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.kind == "ready"

    def problem(self) -> str | None:
        """One line naming what is not ready, or None."""
        bad = [*self.failed, *self.waiting]
        if not self.services:
            return "the compose project has no services"
        return "; ".join(service.describe() for service in bad) or None


def judge(service: Service, max_restarts: int, restarts_before: int | None) -> str:
    """The rule for one service: failed, ready or waiting (see the module's docstring)."""
    if service.state in ("exited", "dead") or service.health == "unhealthy":
        return "failed"
    if restarts_before is not None and service.restarts - restarts_before >= max_restarts:
        return "failed"
    if service.state == "running" and service.health in ("healthy", "none"):
        return "ready"
    return "waiting"


def verdict(services: list[Service], *, max_restarts: int, baseline: Mapping[str, int] | None = None) -> Verdict:
    """The stack's verdict. `baseline` maps container IDs to their restart count when the look began
    (a container not in it, e.g. one created since, counts from zero); None: a single look."""
    failed, waiting = [], []
    for service in services:
        before = None if baseline is None else baseline.get(service.container, 0)
        kind = judge(service, max_restarts, before)
        if kind == "failed":
            failed.append(service)
        elif kind == "waiting":
            waiting.append(service)
    if not services:
        return Verdict("waiting", services)
    kind = "failed" if failed else "waiting" if waiting else "ready"
    return Verdict(kind, services, failed, waiting)


def wait(
    look: Callable[[], list[Service]],
    *,
    timeout: float,
    interval: float,
    max_restarts: int,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Look until the stack is ready or failed, or `timeout` seconds have passed (then: waiting)."""
    deadline = clock() + timeout
    first = look()
    baseline = {service.container: service.restarts for service in first if service.container}
    current = verdict(first, max_restarts=max_restarts, baseline=baseline)
    while current.kind == "waiting" and clock() < deadline:
        sleep(interval)
        current = verdict(look(), max_restarts=max_restarts, baseline=baseline)
    return current
