"""What a person sees: a counter that never passes its total, plain lines in a pipe, one JSON object per line."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from shuttle.events import Event
from shuttle.reporting import ConsoleReporter, JsonReporter
from shuttle.results import RunResult


def test_the_plain_counter_never_shows_more_done_than_its_total() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, force_terminal=False, width=200))
    reporter.start("launch", 3)
    for number in range(6):  # handlers and dynamic includes run more tasks than the listing counted
        reporter.event(Event("task_start", task=f"role : task {number}"))
        reporter.event(Event("task_result", host="clinic-a", task=f"role : task {number}", status="ok"))
    reporter.finish(RunResult(verb="launch"))
    counters = [tuple(map(int, m)) for m in re.findall(r"^\[(\d+)/(\d+)\]", out.getvalue(), re.MULTILINE)]
    assert counters and all(done <= total for done, total in counters), counters
    assert counters[-1][0] == 5  # the count itself goes on


def test_failures_are_shown_with_their_message() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, force_terminal=False, width=200))
    reporter.start("launch", 1)
    reporter.event(Event("task_result", host="clinic-a", task="stack : Wait", status="failed", message="app exited"))
    assert "failed: clinic-a: stack : Wait" in out.getvalue() and "app exited" in out.getvalue()


def test_json_is_one_object_per_line_ending_with_the_summary() -> None:
    out = io.StringIO()
    reporter = JsonReporter(out)
    reporter.start("launch", 10)
    reporter.event(Event("task_result", host="clinic-a", task="t", status="ok"))
    reporter.finish(RunResult(verb="launch"))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["start", "task_result", "summary"]
    assert lines[0]["total"] == 10
