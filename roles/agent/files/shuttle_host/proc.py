"""Running other programs: argv lists only (never a shell built from values), and failures that say why.

Every command the agent runs goes through `run`, so a failure always carries the command's own last
words instead of a traceback, and tests can replace this one function.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from shuttle_host.errors import Failed

#: The PATH every child gets: root's system directories only, whatever the caller's environment holds.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


#: How runc reports a `docker exec` whose process never started; under load it fails so now and then
#: ("read init-p: connection reset by peer"). Nothing ran, so running the command again is safe, unless
#: the program is missing, which no retry mends.
NEVER_STARTED = "unable to start container process"
MISSING = ("executable file not found", "no such file or directory")
ATTEMPTS = 3


def never_started(result: subprocess.CompletedProcess[str]) -> bool:
    """Whether a failed command is a container exec that runc could not start (so it did nothing)."""
    return (
        result.returncode != 0
        and NEVER_STARTED in result.stderr
        and not any(reason in result.stderr for reason in MISSING)
    )


def say(text: str) -> None:
    """Progress and problems for the person or unit watching: stderr, one line each."""
    print(f"shuttle-host: {text}", file=sys.stderr, flush=True)


def last_lines(text: str, count: int = 3) -> str:
    """The last non-empty lines of a program's output, joined: what a one-line error message can hold."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-count:])


def run(
    argv: Sequence[str],
    *,
    what: str,
    input: str | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> subprocess.CompletedProcess[str]:
    """Run `argv`; with `check`, a non-zero exit raises Failed("<what>: <its last lines>"). A container
    exec that runc could not start is run again (twice at most): a restore's swap or roll-back must not
    fail on a hiccup of the container runtime."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            proc = subprocess.run(
                list(argv), input=input, cwd=cwd, env=dict(env) if env is not None else None,
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except FileNotFoundError:
            raise Failed(f"{what}: {argv[0]} is not installed") from None
        except subprocess.TimeoutExpired:
            raise Failed(f"{what}: no answer after {timeout:.0f}s") from None
        if attempt == ATTEMPTS or not never_started(proc):
            break
        say(f"{what}: the container runtime could not start the command ({last_lines(proc.stderr, 1)}); again")
        sleep(attempt)
    if check and proc.returncode != 0:
        why = last_lines(proc.stderr) or last_lines(proc.stdout) or f"exit code {proc.returncode}"
        raise Failed(f"{what}: {why}")
    return proc


def output(argv: Sequence[str], *, what: str, **kwargs: object) -> str:
    """The stdout of a command that must succeed."""
    return run(argv, what=what, **kwargs).stdout  # type: ignore[arg-type]
