"""Moving restored files into place without losing who owns them.

A rename keeps everything; across filesystems (the staging directory on /var, a volume elsewhere) a
copy must keep owners, modes and times itself: shutil.move drops owners, and OpenEMR's files must
stay the web server's.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


def _copy_keeping_owner(src: str, dst: str) -> None:
    shutil.copy2(src, dst, follow_symlinks=False)
    stat = os.lstat(src)
    os.lchown(dst, stat.st_uid, stat.st_gid)


def move(source: Path, target: Path) -> None:
    """Move one file or tree to `target` (which must not exist), keeping owners, modes and times."""
    try:
        source.rename(target)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True, copy_function=_copy_keeping_owner)
        for root, dirs, _files in os.walk(source):
            for name in [".", *dirs]:
                src = Path(root, name)
                stat = src.lstat()
                os.lchown(target / src.relative_to(source), stat.st_uid, stat.st_gid)
        shutil.rmtree(source)
    else:
        _copy_keeping_owner(str(source), str(target))
        source.unlink()


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def replace_content(live: Path, restored: Path, *, keep: tuple[Path, ...] = ()) -> None:
    """Make `live`'s content `restored`'s, leaving the paths in `keep` (inside `live`) as they are."""
    kept = {path.resolve() for path in keep}
    for child in live.iterdir():
        if child.resolve() not in kept:
            remove(child)
    for child in restored.iterdir():
        destination = live / child.name
        if destination.resolve() in kept:
            continue
        move(child, destination)
    shutil.copystat(restored, live)
    stat = restored.stat()
    os.chown(live, stat.st_uid, stat.st_gid)
