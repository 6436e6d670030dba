"""Running commands: a container exec that runc could not start is run again; other failures are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from shuttle_host import proc
from shuttle_host.errors import Failed

RUNC_HICCUP = (
    "OCI runtime exec failed: exec failed: unable to start container process: waiting for init preliminary"
    " setup: read init-p: connection reset by peer: unknown"
)
MISSING = (
    "OCI runtime exec failed: exec failed: unable to start container process:"
    ' exec: "mariadb": executable file not found in $PATH: unknown'
)


def flaky_docker(tmp_path: Path, failures: int, message: str = RUNC_HICCUP) -> Path:
    """A stand-in `docker exec` (a shell script): its first `failures` calls fail as runc does, then it
    runs and prints what it read on stdin; every call is counted in a file beside it."""
    calls = tmp_path / "calls"
    script = tmp_path / "fake-docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo call >> "{calls}"\n'
        f'if [ "$(wc -l < "{calls}")" -le {failures} ]; then echo \'{message}\' >&2; exit 126; fi\n'
        "cat\n"
    )
    script.chmod(0o755)
    return script


def calls(tmp_path: Path) -> int:
    return len((tmp_path / "calls").read_text().splitlines())


def test_an_exec_runc_could_not_start_runs_again_with_its_input(tmp_path) -> None:
    docker = flaky_docker(tmp_path, failures=2)
    slept: list[float] = []
    done = proc.run([str(docker), "exec", "-i", "db", "mariadb"], what="database", input="SELECT 1", sleep=slept.append)
    assert done.stdout == "SELECT 1"
    assert calls(tmp_path) == 3 and slept == [1, 2]


def test_an_exec_that_keeps_failing_gives_up_with_runcs_words(tmp_path) -> None:
    docker = flaky_docker(tmp_path, failures=99)
    with pytest.raises(Failed, match=r"database: OCI runtime exec failed.*connection reset by peer"):
        proc.run([str(docker), "exec", "db", "true"], what="database", sleep=lambda _: None)
    assert calls(tmp_path) == proc.ATTEMPTS


@pytest.mark.parametrize("message", [MISSING, "ERROR 1064 (42000): You have an error in your SQL syntax"])
def test_a_missing_program_or_a_failed_command_is_not_run_again(tmp_path, message) -> None:
    docker = flaky_docker(tmp_path, failures=1, message=message)
    with pytest.raises(Failed):
        proc.run([str(docker), "exec", "db", "mariadb"], what="database", sleep=lambda _: None)
    assert calls(tmp_path) == 1
