"""Replacing a live directory with a restored one by renames, so that a kill at any moment can be undone.

Every directory a restore replaces (a Docker volume's data, the config directory) is staged beside itself, on
its own filesystem, so the swap is two renames and never a copy:

    <live>.restore-tmp      restic writes the backup's copy here (under its full path)
    <live>.restore-new      the staged copy, complete
    <live>.restore-old      the live copy, moved aside by the swap and kept until the restore is committed
    <live>.restore-discard  a restored copy being removed by a roll-back

A directory that cannot be renamed (EXDEV: on overlayfs, a directory of a lower layer, as in a
container's root) is swapped by its children instead: the live children are copied to <live>.restore-old
first, then replaced by the staged ones; the states read the same.

What state a directory is in is read from which of these exist, not from a journal that a kill could
leave behind the truth: `roll_back` and `commit` work from any state, and running either twice is
the same as running it once.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

SUFFIXES = ("tmp", "new", "old", "discard")


def sibling(live: Path, suffix: str) -> Path:
    assert suffix in SUFFIXES
    return live.with_name(f"{live.name}.restore-{suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _sync(directory: Path) -> None:
    """Make the renames inside `directory` durable before the next step relies on them."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_root(live: Path) -> Path:
    """An empty directory beside `live` for restic to restore into (a leftover one is cleared)."""
    root = sibling(live, "tmp")
    _remove(root)
    root.mkdir(mode=0o700)
    return root


def finish_staging(live: Path, restored: Path) -> Path:
    """Move the restored copy (somewhere under the staging root) to <live>.restore-new."""
    new = sibling(live, "new")
    _remove(new)
    restored.rename(new)
    _remove(sibling(live, "tmp"))
    return new


def is_staged(live: Path) -> bool:
    return sibling(live, "new").is_dir()


def swap(live: Path) -> None:
    """The staged copy becomes `live`; the live copy is kept as <live>.restore-old. Done once: a second
    call after a completed swap changes nothing."""
    new, old = sibling(live, "new"), sibling(live, "old")
    if not new.is_dir():
        if old.exists() and live.exists():
            return  # swapped already
        raise FileNotFoundError(f"{new} is not staged")
    if not old.exists():
        try:
            live.rename(old)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            _copy_aside(live, old)
    if live.exists():  # kept in place (not renamable): its children are replaced
        _empty(live)
        _move_children(new, live)
        new.rmdir()
    else:
        new.rename(live)
    _sync(live.parent)


def _copy_aside(live: Path, old: Path) -> None:
    """<live>.restore-old as a complete copy of `live`, owners and modes kept (appears only when complete)."""
    partial = live.with_name(f"{live.name}.restore-copying")
    _remove(partial)
    shutil.copytree(live, partial, symlinks=True, copy_function=_copy_keeping_owner)
    for root, dirs, _files in os.walk(partial):
        for name in [".", *dirs]:
            copied = Path(root, name)
            stat = (live / copied.relative_to(partial)).lstat()
            os.lchown(copied, stat.st_uid, stat.st_gid)
    partial.rename(old)


def _copy_keeping_owner(src: str, dst: str) -> None:
    shutil.copy2(src, dst, follow_symlinks=False)
    stat = os.lstat(src)
    os.lchown(dst, stat.st_uid, stat.st_gid)


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        _remove(child)


def _move_children(source: Path, target: Path) -> None:
    for child in source.iterdir():
        child.rename(target / child.name)
    shutil.copystat(source, target)


def roll_back(live: Path) -> None:
    """`live` as it was before the restore, from whatever state a swap or a kill left."""
    old, discard = sibling(live, "old"), sibling(live, "discard")
    if old.exists():
        if live.exists():
            _remove(discard)
            try:
                live.rename(discard)
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                _empty(live)
        if live.exists():
            _move_children(old, live)
            old.rmdir()
        else:
            old.rename(live)
        _sync(live.parent)
    for suffix in ("discard", "new", "tmp", "copying"):
        _remove(live.with_name(f"{live.name}.restore-{suffix}"))


def commit(live: Path) -> None:
    """The restore is kept: remove the old copy and anything else a swap left beside `live`."""
    if not live.exists():
        raise FileNotFoundError(f"{live} is missing: the restore cannot be committed")
    for suffix in SUFFIXES:
        _remove(sibling(live, suffix))


def leftovers(live: Path) -> list[Path]:
    return [path for suffix in SUFFIXES if (path := sibling(live, suffix)).exists()]
