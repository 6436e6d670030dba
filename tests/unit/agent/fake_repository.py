"""A repository holding one run of the host `clinic` (its database and files snapshots), for the tests of the
restore's and the drill's order: what `runs.Source` gives them, and a log of when it was opened."""

from __future__ import annotations

from typing import Any

from shuttle_host import runs

RUN = "20261101T020000Z"
LISTING = [
    {"id": "a" * 64, "short_id": "aaaaaaaa", "time": "2026-11-01T02:00:00Z",
     "tags": ["shuttle", "shuttle-host=clinic", f"shuttle-run={RUN}", "part=db"]},
    {"id": "b" * 64, "short_id": "bbbbbbbb", "time": "2026-11-01T02:00:01Z",
     "tags": ["shuttle", "shuttle-host=clinic", f"shuttle-run={RUN}", "part=files"]},
]  # fmt: skip


class FakeRepository:
    location = "sftp:clinic@backup.example.org:/srv/clinic"

    def __init__(self, log: list[str] | None = None, snapshots: list[dict] | None = None) -> None:
        self.log = [] if log is None else log
        self.listing = LISTING if snapshots is None else snapshots

    def open(self) -> None:
        self.log.append("open")

    def snapshots(self) -> list[dict[str, Any]]:
        return self.listing

    def runs(self) -> dict[str, runs.Run]:
        return runs.group(self.listing, host="clinic")

    def restore_size(self, snapshot: str) -> int:
        return 1000
