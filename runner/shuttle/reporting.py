"""How a run shows itself: a progress bar on a terminal, plain lines in a pipe, NDJSON with --json,
and always a run log on disk.

Every sink receives the same reduced Events (see events.py), never raw Ansible output, so what is
safe for one is safe for all.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from shuttle.events import Event
from shuttle.results import RunResult

_PROBLEMS = {"failed", "unreachable", "auth_failed", "rejected"}


def log_dir() -> Path:
    """Run logs live in $SHUTTLE_LOG_DIR, else $XDG_STATE_HOME/shuttle/runs (~/.local/state/shuttle/runs)."""
    if os.environ.get("SHUTTLE_LOG_DIR"):
        return Path(os.environ["SHUTTLE_LOG_DIR"])
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state")
    return state / "shuttle" / "runs"


class Reporter(Protocol):
    def start(self, verb: str, total: int | None) -> None: ...
    def event(self, event: Event) -> None: ...
    def finish(self, result: RunResult) -> None: ...


def _line(event: Event) -> str:
    parts = [event.status or event.event, event.host or "-", event.task or ""]
    text = "  ".join(part for part in parts if part)
    if event.message:
        text += f": {event.message}"
    return text


class RunLog:
    """Plain-text log of one run, 0600, in log_dir(); its path is reported at the end of every run."""

    def __init__(self, verb: str) -> None:
        directory = log_dir()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.path = directory / f"{stamp}-{verb}-{os.getpid()}.log"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: IO[str] = os.fdopen(fd, "w", buffering=1)

    def start(self, verb: str, total: int | None) -> None:
        self._write(f"start {verb}" + (f" ({total} host-tasks)" if total else ""))

    def event(self, event: Event) -> None:
        self._write(_line(event))

    def finish(self, result: RunResult) -> None:
        for host in result.hosts.values():
            self._write(
                f"summary {host.host}: {host.status} ok={host.ok} changed={host.changed} failed={host.failed} "
                f"unreachable={host.unreachable} skipped={host.skipped}"
            )
        for text in result.notices:
            self._write(f"notice {text}")
        for text in result.warnings:
            self._write(f"warning {text}")
        self._write(f"exit {result.exit_code}")
        self._file.close()

    def _write(self, text: str) -> None:
        self._file.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + text.replace("\n", "\n    ") + "\n")


class JsonReporter:
    """One JSON object per line on stdout: events as they happen, then a summary object."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout

    def _emit(self, data: dict[str, object]) -> None:
        self._stream.write(json.dumps(data, sort_keys=True) + "\n")
        self._stream.flush()

    def start(self, verb: str, total: int | None) -> None:
        self._emit({"event": "start", "verb": verb, "total": total, "time": time.time()})

    def event(self, event: Event) -> None:
        self._emit(event.as_dict())

    def finish(self, result: RunResult) -> None:
        self._emit(result.as_dict())


class ConsoleReporter:
    """Human output: a live bar (task, host, done/total) on a terminal, plain lines otherwise."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False, highlight=False)
        self._progress: Progress | None = None
        self._bar = None
        self._done = 0
        self._total: int | None = None

    def _shown_total(self) -> str:
        return "?" if self._total is None else str(max(self._total, self._done))

    def start(self, verb: str, total: int | None) -> None:
        self._total = total
        if self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", style="bold"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._bar = self._progress.add_task(verb, total=total)
        else:
            self.console.print(f"shuttle {verb}: {total or '?'} host-tasks")

    def event(self, event: Event) -> None:
        if event.event == "warning":
            self.console.print(f"[yellow]warning:[/] {escape(event.message or '')}", highlight=False)
            return
        if event.event == "task_start":
            if self._progress is not None and self._bar is not None:
                self._progress.update(self._bar, description=event.task or "")
            else:
                self.console.print(f"[{self._done}/{self._shown_total()}] {event.task}", markup=False, soft_wrap=True)
            return
        self._done += 1
        if self._total is not None and self._done > self._total:
            # Handlers and dynamic includes run tasks the listing could not count: the total grows with them.
            self._total = self._done
        if self._progress is not None and self._bar is not None:
            self._progress.update(
                self._bar, total=self._total, completed=self._done, description=f"{event.task} — {event.host}"
            )
        if event.status in _PROBLEMS:
            self.console.print(f"[red]{event.status}[/]: {escape(f'{event.host}: {event.task}')}", highlight=False)
            if event.message:
                self.console.print("  " + event.message.replace("\n", "\n  "), markup=False, highlight=False)

    def finish(self, result: RunResult) -> None:
        if self._progress is not None:
            self._progress.stop()
        table = Table(title=f"shuttle {result.verb}", title_justify="left")
        for column in ("host", "status", "ok", "changed", "failed", "unreachable", "skipped"):
            table.add_column(column)
        for host in result.hosts.values():
            style = "green" if host.status == "ok" else "red"
            table.add_row(
                escape(host.host), f"[{style}]{host.status}[/]", str(host.ok), str(host.changed), str(host.failed),
                str(host.unreachable), str(host.skipped),
            )  # fmt: skip
        self.console.print(table)
        for name, report in result.backups.items():
            if "backups" in report:  # `--list`; a plain `shuttle backup` reports in its notice
                self.console.print(_backups_table(name, report))
        if result.status:
            self.console.print(_status_table(result.status))
        for notice in result.notices:
            self.console.print(escape(notice), highlight=False, soft_wrap=True)
        for warning in result.warnings:
            self.console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
        for host in result.hosts.values():
            if host.message and host.status != "ok":
                self.console.print(f"{host.host}: {host.message}", markup=False, highlight=False)
        if result.interrupted:
            self.console.print("interrupted: the run was cancelled", markup=False)
        # Whole lines in a pipe: a wrapped path cannot be copied, or read by a script.
        self.console.print(f"log: {result.log}", markup=False, highlight=False, soft_wrap=True)


def _backups_table(host: str, report: dict) -> Table:
    """`shuttle backup --list`: one row per restorable backup, and the last scheduled run's result."""
    last = report.get("last_run") or {}
    caption = f"last run: {last.get('result', 'none yet')} {last.get('finished', '')} {last.get('message', '')}".strip()
    state = report.get("repository_state")
    if state and state != "ok":
        caption += f"; repository: {state}"
    table = Table(title=f"backups of {host} in {report.get('repository', '?')}", title_justify="left", caption=caption)
    for column in ("backup", "time", "database", "files", "note"):
        table.add_column(column)
    for entry in report.get("backups") or []:
        note = "safety (before a restore)" if entry.get("safety") else ""
        table.add_row(
            escape(str(entry["run"])), escape(str(entry["time"])), escape(str(entry.get("db"))),
            escape(str(entry.get("files"))), note,
        )  # fmt: skip
    return table


def _status_table(status: dict[str, dict]) -> Table:
    """`shuttle status`: one row per host; the services that are not ready are named."""
    table = Table(title="status", title_justify="left")
    for column in ("host", "stack", "openemr", "admin user", "time zone", "docker", "last backup", "last drill"):
        table.add_column(column)
    for name, report in status.items():
        bad = [service for service, state in (report.get("services") or {}).items() if not state.get("ready")]
        stack = "[green]ready[/]" if report.get("ready") else f"[red]not ready[/] {escape(' '.join(bad))}".strip()
        last = report.get("last_backup") or {}
        backup = f"{last.get('result', '?')} {last.get('finished', '')}".strip() if last else "none yet"
        drilled = report.get("last_drill") or {}
        drill = f"{drilled.get('result', '?')} {drilled.get('finished', '')}".strip() if drilled else "none yet"
        versions = report.get("openemr") or {}
        openemr = f"{versions.get('version') or '?'} (marker {versions.get('docker_version') or '?'})"
        cells = [escape(str(report.get(key) or "-")) for key in ("admin_user", "timezone", "docker")]
        table.add_row(escape(name), stack, escape(openemr), *cells, escape(backup), escape(drill))
    return table
