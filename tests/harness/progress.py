"""Progress of slow harness work (image builds, host boots, converges), so minutes never pass in silence.

`say` prints one line with the time elapsed since the harness started. The test session points `sink`
at pytest's terminal (past output capture); on the command line it is stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_STARTED = time.monotonic()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


sink: Callable[[str], None] = _stderr


def say(text: str) -> None:
    elapsed = int(time.monotonic() - _STARTED)
    sink(f"[harness {elapsed // 60:02d}:{elapsed % 60:02d}] {text}")


@contextmanager
def step(text: str) -> Iterator[None]:
    """`text ...` now, and `text: done in Ns` (or `failed after Ns`) when the block ends."""
    say(f"{text} ...")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        say(f"{text}: failed after {time.monotonic() - started:.0f}s")
        raise
    say(f"{text}: done in {time.monotonic() - started:.0f}s")
