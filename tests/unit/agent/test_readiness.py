"""The one readiness rule, as a launch, a restore, a first boot and `status` apply it."""

from __future__ import annotations

import pytest

from shuttle_host import readiness
from shuttle_host.readiness import Service
from tests.unit.agent.fake_clock import FakeClock


def svc(name: str, state: str = "running", health: str = "healthy", restarts: int = 0, cid: str = "") -> Service:
    return Service(name, state, health, restarts, container=cid or f"id-{name}")


@pytest.mark.parametrize(
    ("service", "kind"),
    [
        (svc("db"), "ready"),
        (svc("proxy", health="none"), "ready"),
        (svc("app", health="starting"), "waiting"),
        (svc("app", state="restarting", health="none"), "waiting"),
        (svc("app", state="created", health="none"), "waiting"),
        (svc("app", state="missing", health="none"), "waiting"),
        (svc("app", state="exited", health="none"), "failed"),
        (svc("app", state="dead", health="none"), "failed"),
        (svc("app", health="unhealthy"), "failed"),
    ],
)
def test_each_state_gets_its_verdict(service: Service, kind: str) -> None:
    assert readiness.judge(service, 3, None) == kind


def test_a_crash_loop_fails_after_max_restarts_since_the_look_began() -> None:
    looping = svc("app", state="restarting", health="none", restarts=5)
    assert readiness.judge(looping, 3, restarts_before=2) == "failed"
    assert readiness.judge(looping, 3, restarts_before=3) == "waiting"


def test_a_single_look_judges_the_state_not_old_restarts() -> None:
    """A container that restarted long ago and is healthy now is ready in `status`."""
    assert readiness.verdict([svc("app", restarts=9)], max_restarts=3).ready


def test_the_stack_is_as_bad_as_its_worst_service() -> None:
    assert readiness.verdict([svc("db"), svc("app", health="starting")], max_restarts=3).kind == "waiting"
    mixed = readiness.verdict([svc("db"), svc("app", health="starting"), svc("proxy", "exited")], max_restarts=3)
    assert mixed.kind == "failed" and [s.name for s in mixed.failed] == ["proxy"]
    assert readiness.verdict([], max_restarts=3).kind == "waiting"


def test_the_problem_names_the_services_and_their_state() -> None:
    verdict = readiness.verdict([svc("db"), svc("app", "exited", "none", 4)], max_restarts=3)
    assert verdict.problem() == "service app is exited (health: none, restarts: 4)"
    assert readiness.verdict([], max_restarts=3).problem() == "the compose project has no services"


def test_a_wait_ends_as_soon_as_the_stack_is_ready() -> None:
    looks = iter([[svc("app", health="starting")], [svc("app", health="starting")], [svc("app")]])
    clock = FakeClock()
    verdict = readiness.wait(lambda: next(looks), timeout=900, interval=5, max_restarts=3, clock=clock,
                             sleep=clock.sleep)  # fmt: skip
    assert verdict.ready and clock.now == 10


def test_a_wait_fails_a_crash_loop_long_before_its_timeout() -> None:
    counts = iter(range(0, 100))

    def look() -> list[Service]:
        return [svc("db"), svc("app", state="restarting", health="none", restarts=next(counts))]

    clock = FakeClock()
    verdict = readiness.wait(look, timeout=900, interval=1, max_restarts=3, clock=clock, sleep=clock.sleep)
    assert verdict.kind == "failed" and clock.now == 3


def test_a_recreated_container_counts_its_restarts_from_zero() -> None:
    looks = iter([[svc("app", "restarting", "none", restarts=7, cid="old")],
                  [svc("app", "restarting", "none", restarts=2, cid="new")],
                  [svc("app", "restarting", "none", restarts=3, cid="new")]])  # fmt: skip
    clock = FakeClock()
    verdict = readiness.wait(lambda: next(looks), timeout=900, interval=1, max_restarts=3, clock=clock,
                             sleep=clock.sleep)  # fmt: skip
    assert verdict.kind == "failed" and clock.now == 2


def test_a_wait_that_runs_out_says_waiting() -> None:
    clock = FakeClock()
    verdict = readiness.wait(lambda: [svc("app", health="starting")], timeout=30, interval=5, max_restarts=3,
                             clock=clock, sleep=clock.sleep)  # fmt: skip
    assert verdict.kind == "waiting" and clock.now == 30


def test_services_come_from_docker_inspect() -> None:
    info = {"Id": "abc", "State": {"Status": "running", "Health": {"Status": "healthy"}}, "RestartCount": 2,
            "Config": {"Image": "mariadb:11.4"}}  # fmt: skip
    assert readiness.from_inspect("db", info) == Service("db", "running", "healthy", 2, "abc", "mariadb:11.4")
    assert readiness.from_inspect("db", {"State": {"Status": "running"}}).health == "none"
    assert readiness.from_inspect("db", None).state == "missing"
