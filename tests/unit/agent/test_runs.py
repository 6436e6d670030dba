"""Which snapshots make a backup, which backup a request means, and what retention keeps."""

from __future__ import annotations

import datetime as dt

import pytest

from shuttle_host import runs
from shuttle_host.errors import Refused


def snap(run: str, part: str, *, short: str, safety: bool = False, time: str | None = None) -> dict:
    tags = ["shuttle", f"shuttle-run={run}", f"part={part}", *(["safety"] if safety else [])]
    return {"id": short + "0" * 56, "short_id": short, "time": time or f"{run[:4]}-01-01T00:00:00Z", "tags": tags,
            "hostname": "clinic"}  # fmt: skip


LISTING = [
    snap("20261101T020000Z", "db", short="aaaa0001"),
    snap("20261101T020000Z", "files", short="aaaa0002"),
    snap("20261102T020000Z", "db", short="bbbb0001"),  # killed before its files part
    snap("20261103T020000Z", "db", short="cccc0001"),
    snap("20261103T020000Z", "files", short="cccc0002"),
    snap("20261103T120000Z", "db", short="dddd0001", safety=True),
    snap("20261103T120000Z", "files", short="dddd0002", safety=True),
    {"id": "e" * 64, "short_id": "eeeeeeee", "time": "2026-01-01T00:00:00Z", "tags": ["shuttle"]},  # not a run
]


def test_snapshots_group_into_runs_by_their_tag() -> None:
    grouped = runs.group(LISTING)
    assert sorted(grouped) == ["20261101T020000Z", "20261102T020000Z", "20261103T020000Z", "20261103T120000Z"]
    assert grouped["20261101T020000Z"].parts == {"db": "aaaa0001", "files": "aaaa0002"}
    assert grouped["20261103T120000Z"].safety is True
    assert len(grouped["20261101T020000Z"].ids) == 2


def test_a_run_missing_a_part_is_incomplete_and_never_listed() -> None:
    grouped = runs.group(LISTING)
    assert [run.run for run in runs.incomplete(grouped)] == ["20261102T020000Z"]
    assert "20261102T020000Z" not in [run.run for run in runs.complete(grouped)]


def test_latest_is_the_newest_regular_backup_not_a_safety_one() -> None:
    assert runs.pick(runs.group(LISTING), "latest", "repo").run == "20261103T020000Z"


def test_a_safety_backup_is_picked_by_its_id() -> None:
    assert runs.pick(runs.group(LISTING), "20261103T120000Z", "repo").safety is True


def test_latest_falls_back_to_a_safety_backup_when_there_is_nothing_else() -> None:
    only_safety = [s for s in LISTING if "safety" in s["tags"]]
    assert runs.pick(runs.group(only_safety), "latest", "repo").run == "20261103T120000Z"


@pytest.mark.parametrize("wanted", ["20261101T020000Z", "aaaa0001", "aaaa0002", "aaaa0002" + "0" * 20])
def test_a_run_is_found_by_its_id_or_either_snapshot(wanted: str) -> None:
    assert runs.pick(runs.group(LISTING), wanted, "repo").run == "20261101T020000Z"


def test_an_incomplete_run_cannot_be_picked() -> None:
    with pytest.raises(Refused, match="no backup '20261102T020000Z'"):
        runs.pick(runs.group(LISTING), "20261102T020000Z", "repo")


def test_an_empty_repository_is_refused_naming_it() -> None:
    with pytest.raises(Refused, match="the repository s3:https://h/b holds no complete backup"):
        runs.pick({}, "latest", "s3:https://h/b")


def test_run_ids_are_utc_and_sort_by_time() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert runs.new_run_id(dt.datetime(2026, 11, 21, 3, 30, 0, tzinfo=berlin)) == "20261121T023000Z"
    assert runs.new_run_id() > "20260101T000000Z"


def test_retention_keeps_the_configured_numbers() -> None:
    assert runs.retention_args({"daily": 7, "weekly": 4, "monthly": 6}) == [
        "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6",
    ]  # fmt: skip


def test_listing_shows_parts_without_internal_ids() -> None:
    shown = runs.group(LISTING)["20261101T020000Z"].as_dict()
    assert shown == {"run": "20261101T020000Z", "time": "2026-01-01T00:00:00Z", "host": "clinic", "safety": False,
                     "db": "aaaa0001", "files": "aaaa0002"}  # fmt: skip
