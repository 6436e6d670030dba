"""Per-host outcomes and the exit code of a run."""

from __future__ import annotations

import pytest

from shuttle.results import RunResult


@pytest.mark.parametrize(
    ("statuses", "interrupted", "code"),
    [
        ([], False, 0),
        (["ok", "ok"], False, 0),
        (["ok", "rejected"], False, 2),
        (["ok", "auth_failed"], False, 2),
        (["ok", "unreachable", "rejected"], False, 3),
        (["unreachable", "failed"], False, 1),
        (["ok"], True, 130),
    ],
)
def test_the_worst_host_decides_the_exit_code(statuses: list[str], interrupted: bool, code: int) -> None:
    result = RunResult(verb="launch", interrupted=interrupted)
    for number, status in enumerate(statuses):
        result.host(f"h{number}").record(status, f"{status} message")
    assert result.exit_code == code


def test_a_host_keeps_its_worst_status_and_its_message() -> None:
    result = RunResult(verb="launch")
    host = result.host("clinic-a")
    host.record("failed", "the stack failed")
    host.record("ok", None)
    host.record("unreachable", "gone")
    assert (host.status, host.message) == ("failed", "the stack failed")


def test_counts_come_from_ansibles_recap() -> None:
    result = RunResult(verb="launch")
    result.host("clinic-a").count({"ok": {"clinic-a": 90}, "changed": {"clinic-a": 3}, "dark": {}, "failures": {}})
    summary = result.as_dict()
    assert summary["hosts"]["clinic-a"]["ok"] == 90 and summary["hosts"]["clinic-a"]["changed"] == 3
    assert summary["event"] == "summary" and summary["exit_code"] == 0
