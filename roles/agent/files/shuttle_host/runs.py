"""Backups as users see them: runs made of two restic snapshots, and which run a request means.

One backup is a run: a database snapshot (`part=db`) and a files snapshot (`part=files`), both tagged
`shuttle-run=<ID>`, where the ID is the run's UTC start time, and `shuttle-host=<name>`, the host's
identity (its inventory name): one repository may hold many hosts' runs, and a host lists, restores,
retains and cleans up its own only. Only a run with both parts can be restored; a run missing one (a
backup that failed or was killed midway) is removed before the next.

Retention is decided here, not by `restic forget --keep-*`: restic keeps one snapshot per day per
group, so a same-day safety backup used to forget the backup being restored, and its bucket rules
differ between restic 0.14 and 0.18. Here the newest `last` regular runs are always kept, then one
run per day, week and month as configured; safety backups (taken before a restore) are kept by their
own rule (the newest `safety` of them); a pinned run (the one a restore is using) is never forgotten.
Pure functions of restic's snapshot listing, so they are tested without a repository.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shuttle_host.errors import Refused

RUN_TAG = "shuttle-run="
PART_TAG = "part="
HOST_TAG = "shuttle-host="
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


def host_tags(host: str) -> list[str]:
    return [SHUTTLE_TAG, f"{HOST_TAG}{host}"]


def hosts_in(snapshots: Iterable[Mapping[str, Any]]) -> list[str]:
    """The identities of the hosts whose runs a listing holds (for a refusal that says which exist)."""
    return sorted({value for snap in snapshots if (value := tag_value(snap.get("tags") or [], HOST_TAG))})


def group(snapshots: Iterable[Mapping[str, Any]], host: str | None = None) -> dict[str, Run]:
    """Snapshots grouped into runs by their run tag; snapshots without one, of no known part, or (with
    `host`) of another host, are ignored."""
    runs: dict[str, Run] = {}
    for snap in snapshots:
        tags = snap.get("tags") or []
        run_id, part = tag_value(tags, RUN_TAG), tag_value(tags, PART_TAG)
        if run_id is None or part not in PARTS:
            continue
        owner = tag_value(tags, HOST_TAG)
        if host is not None and owner != host:
            continue
        run = runs.setdefault(run_id, Run(run=run_id, time=str(snap["time"]), host=owner))
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


def pick(runs: Mapping[str, Run], wanted: str, repository: str, *, host: str = "", others: Iterable[str] = ()) -> Run:
    """The run `wanted` names: `latest` (the newest regular backup; safety backups only by ID), a run ID,
    or the ID of one of its snapshots. Refused when there is no such complete run; the refusal names the
    other hosts with backups there, since restoring one of theirs has to be asked for (`--from-host`)."""
    available = complete(runs)
    if not available:
        whose = f" of {host}" if host else ""
        elsewhere = [other for other in others if other != host]
        hint = f" (it holds backups of {', '.join(elsewhere)}: choose one with --from-host)" if elsewhere else ""
        raise Refused(f"the repository {repository} holds no complete backup{whose}{hint}")
    if wanted == "latest":
        regular = [run for run in available if not run.safety]
        return (regular or available)[-1]
    for run in available:
        if wanted == run.run or wanted in run.parts.values() or any(full.startswith(wanted) for full in run.ids):
            return run
    raise Refused(f"no backup {wanted!r}; see `shuttle backup --list`")


def _bucket(run: Run, unit: str) -> str:
    moment = dt.datetime.strptime(run.run, "%Y%m%dT%H%M%SZ")
    if unit == "daily":
        return moment.strftime("%Y-%m-%d")
    if unit == "weekly":
        year, week, _ = moment.isocalendar()
        return f"{year}-W{week:02d}"
    return moment.strftime("%Y-%m")


def to_keep(runs: Mapping[str, Run], retention: Mapping[str, int], *, pinned: Iterable[str] = ()) -> set[str]:
    """The IDs of the runs retention keeps (see the module docstring); every other complete run goes."""
    available = complete(runs)
    regular = [run for run in reversed(available) if not run.safety]  # newest first
    safety = [run for run in reversed(available) if run.safety]
    keep = {run.run for run in regular[: retention["last"]]}
    keep |= {run.run for run in safety[: retention["safety"]]}
    for unit in ("daily", "weekly", "monthly"):
        seen: list[str] = []
        for run in regular:
            bucket = _bucket(run, unit)
            if bucket in seen:
                continue
            if len(seen) == retention[unit]:
                break
            seen.append(bucket)
            keep.add(run.run)
    return keep | set(pinned)


def to_forget(runs: Mapping[str, Run], retention: Mapping[str, int], *, pinned: Iterable[str] = ()) -> list[Run]:
    """The complete runs retention removes, oldest first (incomplete ones are removed before each run)."""
    keep = to_keep(runs, retention, pinned=pinned)
    return [run for run in complete(runs) if run.run not in keep]


class Source(Protocol):
    """What a restore and a drill read of a repository (restic.Repository; a fake in the unit tests)."""

    location: str

    def open(self) -> None: ...
    def runs(self) -> dict[str, Run]: ...
    def snapshots(self) -> list[dict[str, Any]]: ...
    def restore_size(self, snapshot: str) -> int: ...
