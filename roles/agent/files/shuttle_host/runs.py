"""Backups as users see them: runs made of two restic snapshots, and which run a request means.

One backup is a run: a database snapshot (`part=db`) and a files snapshot (`part=files`), both tagged
`shuttle-run=<ID>`, where the ID is the run's UTC start time. Only a run with both parts can be
restored; a run missing one (a backup that failed or was killed midway) is removed before the next.
Pure functions of restic's snapshot listing, so they are tested without a repository.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shuttle_host.errors import Refused

RUN_TAG = "shuttle-run="
PART_TAG = "part="
#: Every snapshot Shuttle makes carries this tag; retention only ever looks at those.
SHUTTLE_TAG = "shuttle"
SAFETY_TAG = "safety"
PARTS = ("db", "files")


@dataclass
class Run:
    """One backup: its ID, when it began, and its snapshots by part."""

    run: str
    time: str
    host: str | None
    parts: dict[str, str] = field(default_factory=dict)  # part -> short snapshot ID
    ids: list[str] = field(default_factory=list)  # every snapshot's full ID
    safety: bool = False

    @property
    def complete(self) -> bool:
        return all(part in self.parts for part in PARTS)

    def as_dict(self) -> dict[str, Any]:
        """What `list` shows and `can-restore` prints (without the internal full IDs)."""
        return {"run": self.run, "time": self.time, "host": self.host, "safety": self.safety, **self.parts}


def new_run_id(now: dt.datetime | None = None) -> str:
    moment = now or dt.datetime.now(dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def tag_value(tags: Iterable[str], prefix: str) -> str | None:
    return next((tag[len(prefix) :] for tag in tags if tag.startswith(prefix)), None)


def group(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Run]:
    """Snapshots grouped into runs by their run tag; snapshots without one, or of no known part, are ignored."""
    runs: dict[str, Run] = {}
    for snap in snapshots:
        tags = snap.get("tags") or []
        run_id, part = tag_value(tags, RUN_TAG), tag_value(tags, PART_TAG)
        if run_id is None or part not in PARTS:
            continue
        run = runs.setdefault(run_id, Run(run=run_id, time=str(snap["time"]), host=snap.get("hostname")))
        run.parts[part] = str(snap.get("short_id") or str(snap["id"])[:8])
        run.ids.append(str(snap["id"]))
        run.safety = run.safety or SAFETY_TAG in tags
        run.time = min(run.time, str(snap["time"]))
    return runs


def complete(runs: Mapping[str, Run]) -> list[Run]:
    """The runs that can be restored, oldest first."""
    return sorted((run for run in runs.values() if run.complete), key=lambda run: run.run)


def incomplete(runs: Mapping[str, Run]) -> list[Run]:
    return sorted((run for run in runs.values() if not run.complete), key=lambda run: run.run)


def pick(runs: Mapping[str, Run], wanted: str, repository: str) -> Run:
    """The run `wanted` names: `latest` (the newest regular backup; safety backups only by ID), a run ID,
    or the ID of one of its snapshots. Refused when there is no such complete run."""
    available = complete(runs)
    if not available:
        raise Refused(f"the repository {repository} holds no complete backup")
    if wanted == "latest":
        regular = [run for run in available if not run.safety]
        return (regular or available)[-1]
    for run in available:
        if wanted == run.run or wanted in run.parts.values() or any(full.startswith(wanted) for full in run.ids):
            return run
    raise Refused(f"no backup {wanted!r}; see `shuttle backup --list`")


def retention_args(retention: Mapping[str, int]) -> list[str]:
    """`restic forget` options that keep the configured daily, weekly and monthly backups."""
    return [
        "--keep-daily", str(retention["daily"]),
        "--keep-weekly", str(retention["weekly"]),
        "--keep-monthly", str(retention["monthly"]),
    ]  # fmt: skip
