"""Which snapshots make a backup, which backup a request means, and what retention keeps."""

from __future__ import annotations

import datetime as dt

import pytest

from shuttle_host import runs
from shuttle_host.errors import Refused


def snap(
    run: str, part: str, *, short: str, safety: bool = False, time: str | None = None, host: str = "clinic"
) -> dict:
    tags = ["shuttle", f"shuttle-host={host}", f"shuttle-run={run}", f"part={part}", *(["safety"] if safety else [])]
    return {"id": short + "0" * 56, "short_id": short, "time": time or f"{run[:4]}-01-01T00:00:00Z", "tags": tags,
            "hostname": host}  # fmt: skip


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


RETENTION = {"last": 1, "daily": 7, "weekly": 4, "monthly": 6, "safety": 3}


def complete_runs(*specs: tuple[str, bool]) -> dict[str, runs.Run]:
    """Complete runs of host `clinic`, from (run ID, safety) pairs."""
    listing = []
    for number, (run, safety) in enumerate(specs):
        listing += [snap(run, "db", short=f"{number:04d}0001", safety=safety),
                    snap(run, "files", short=f"{number:04d}0002", safety=safety)]  # fmt: skip
    return runs.group(listing)


def test_a_second_backup_on_the_same_day_keeps_the_first_within_last() -> None:
    """The restore of an earlier same-day backup by ID needs it to survive the later run's retention."""
    same_day = complete_runs(("20261103T020000Z", False), ("20261103T090000Z", False), ("20261103T100000Z", False))
    assert runs.to_forget(same_day, {**RETENTION, "last": 5}) == []
    gone = [run.run for run in runs.to_forget(same_day, RETENTION)]
    assert gone == ["20261103T020000Z", "20261103T090000Z"]  # last=1 and one per day: the day's newest stays


def test_daily_weekly_and_monthly_keep_the_newest_of_each_bucket() -> None:
    history = complete_runs(*[(f"202610{day:02d}T020000Z", False) for day in range(1, 32)])
    kept = runs.to_keep(history, {"last": 1, "daily": 3, "weekly": 2, "monthly": 2, "safety": 3})
    # 31, 30, 29 (daily); 31 (its week) and 25 (the week before, Sunday); October's and nothing of September
    assert kept == {"20261031T020000Z", "20261030T020000Z", "20261029T020000Z", "20261025T020000Z"}


def test_safety_backups_are_kept_by_their_own_rule_and_never_evict_regular_ones() -> None:
    history = complete_runs(
        ("20261101T020000Z", False),
        *[(f"20261102T1{hour}0000Z", True) for hour in range(5)],
    )
    gone = [run.run for run in runs.to_forget(history, RETENTION)]
    assert gone == ["20261102T100000Z", "20261102T110000Z"]  # the two oldest of five safety backups
    assert "20261101T020000Z" in runs.to_keep(history, RETENTION)


def test_a_pinned_run_is_never_forgotten() -> None:
    history = complete_runs(("20261103T020000Z", False), ("20261103T100000Z", False))
    assert runs.to_forget(history, RETENTION, pinned=["20261103T020000Z"]) == []


def test_a_host_sees_only_its_own_runs_in_a_shared_repository() -> None:
    shared = [*LISTING, snap("20261101T020000Z", "db", short="ffff0001", host="clinic-b"),
              snap("20261104T020000Z", "db", short="ffff0002", host="clinic-b"),
              snap("20261104T020000Z", "files", short="ffff0003", host="clinic-b")]  # fmt: skip
    own = runs.group(shared, host="clinic")
    assert sorted(own) == ["20261101T020000Z", "20261102T020000Z", "20261103T020000Z", "20261103T120000Z"]
    assert own["20261101T020000Z"].parts == {"db": "aaaa0001", "files": "aaaa0002"}  # B's same-second db part
    theirs = runs.group(shared, host="clinic-b")
    assert [run.run for run in runs.complete(theirs)] == ["20261104T020000Z"]
    assert runs.hosts_in(shared) == ["clinic", "clinic-b"]


def test_a_host_without_backups_is_told_whose_are_there() -> None:
    with pytest.raises(Refused, match=r"holds no complete backup of clinic-new .*backups of clinic, clinic-b"):
        runs.pick({}, "latest", "s3:https://s3.example/b", host="clinic-new", others=["clinic", "clinic-b"])


def test_listing_shows_parts_without_internal_ids() -> None:
    shown = runs.group(LISTING)["20261101T020000Z"].as_dict()
    assert shown == {"run": "20261101T020000Z", "time": "2026-01-01T00:00:00Z", "host": "clinic", "safety": False,
                     "db": "aaaa0001", "files": "aaaa0002"}  # fmt: skip
