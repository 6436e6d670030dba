"""Directories replaced by renames: from every state a kill can leave, a roll-back gives back the live
copy exactly, and a commit keeps the restored one (real directories under tmp_path)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from shuttle_host import swap


def tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture
def live(tmp_path: Path) -> Path:
    directory = tmp_path / "volumes" / "sites" / "_data"
    (directory / "default" / "documents").mkdir(parents=True)
    (directory / "default" / "sqlconf.php").write_bytes(b"live config")
    (directory / "default" / "documents" / "scan.bin").write_bytes(b"live scan")
    return directory


def stage(live: Path) -> dict[str, bytes]:
    """Stage a restored copy as RestoreHost does: restic writes under the staging root at the full path."""
    root = swap.staging_root(live)
    restored = root / str(live).lstrip("/")
    (restored / "default").mkdir(parents=True)
    (restored / "default" / "sqlconf.php").write_bytes(b"restored config")
    (restored / "default" / "letter.txt").write_bytes(b"restored letter")
    swap.finish_staging(live, restored)
    return tree(swap.sibling(live, "new"))


def test_a_swap_makes_the_staged_copy_live_and_keeps_the_old_beside_it(live: Path) -> None:
    before = tree(live)
    staged = stage(live)
    swap.swap(live)
    assert tree(live) == staged and tree(swap.sibling(live, "old")) == before
    swap.swap(live)  # a second call (a retry after a kill just after the swap) changes nothing
    assert tree(live) == staged
    swap.commit(live)
    assert tree(live) == staged and swap.leftovers(live) == []


def test_the_staged_copy_is_on_the_live_directory_s_own_filesystem(live: Path) -> None:
    stage(live)
    assert os.stat(swap.sibling(live, "new")).st_dev == os.stat(live.parent).st_dev


@pytest.mark.parametrize("point", ["staging", "staged", "moved aside", "swapped", "discarding"])
def test_a_roll_back_from_any_kill_point_gives_the_live_copy_back(live: Path, point: str) -> None:
    before = tree(live)
    if point == "staging":  # killed while restic was writing the staging root
        root = swap.staging_root(live)
        (root / "partial").write_bytes(b"half")
    else:
        stage(live)
    if point == "moved aside":  # killed between the swap's two renames: no live directory at all
        live.rename(swap.sibling(live, "old"))
    elif point in ("swapped", "discarding"):
        swap.swap(live)
    if point == "discarding":  # killed while a first roll-back was removing the restored copy
        live.rename(swap.sibling(live, "discard"))
    swap.roll_back(live)
    assert tree(live) == before
    assert swap.leftovers(live) == []
    swap.roll_back(live)  # and again: nothing more happens
    assert tree(live) == before


def test_a_commit_refuses_when_the_live_directory_is_missing(live: Path) -> None:
    stage(live)
    live.rename(swap.sibling(live, "old"))
    with pytest.raises(FileNotFoundError):
        swap.commit(live)
    assert swap.sibling(live, "old").is_dir(), "the only copy left must not be removed"


def test_swapping_what_was_never_staged_fails_and_touches_nothing(live: Path) -> None:
    before = tree(live)
    with pytest.raises(FileNotFoundError, match="is not staged"):
        swap.swap(live)
    assert tree(live) == before


def test_a_directory_that_cannot_be_renamed_is_swapped_and_rolled_back_by_its_children(live: Path, monkeypatch) -> None:
    """overlayfs refuses to rename a directory of a lower layer (EXDEV), as in a container's root file system."""
    real = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if self == live:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    before = tree(live)
    staged = stage(live)
    swap.swap(live)
    assert tree(live) == staged and tree(swap.sibling(live, "old")) == before
    swap.roll_back(live)
    assert tree(live) == before and swap.leftovers(live) == []
    stage(live)
    swap.swap(live)
    swap.commit(live)
    assert tree(live) == staged and swap.leftovers(live) == []
