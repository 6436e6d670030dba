"""`shuttle launch` against a real test host, as a user runs it: progress, summary, JSON, re-runs, secrets."""

from __future__ import annotations

import json
import os
import pty
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import SENTINEL, SENTINEL_CONFIG, Launched, launch, ssh_args, stack_config

#: Secrets the stack role generates on the host (root-only files); none may leave it.
GENERATED = ("db-root-password", "db-password", "openemr-admin-password")
REPO = Path(__file__).resolve().parents[1]


def test_json_is_one_object_per_line_with_a_final_summary(launched: Launched) -> None:
    events = launched.run.events  # every line parses as JSON
    assert events[0]["event"] == "start" and events[0]["total"] > 0
    results = [e for e in events if e["event"] == "task_result"]
    assert results and all({"host", "task", "status"} <= e.keys() for e in results)
    assert any(e["event"] == "task_start" and e["task"] for e in events)
    summary = launched.run.summary
    assert summary["event"] == "summary" and summary["exit_code"] == 0
    name = launched.host.target.split("@")[1].replace(":", "-")
    assert summary["hosts"][name]["status"] == "ok"
    assert summary["hosts"][name]["failed"] == 0
    assert Path(summary["log"]).is_file()


def test_the_run_says_where_the_admin_password_is(launched: Launched) -> None:
    notices = " ".join(launched.run.summary["notices"])
    assert "/etc/shuttle/secrets/openemr-admin-password" in notices


def test_second_launch_changes_nothing(launched: Launched) -> None:
    run = launch(launched.host, stack_config(**SENTINEL_CONFIG), tmp=launched.tmp)
    assert run.returncode == 0, run.explain()
    assert run.host["changed"] == 0, [e for e in run.events if e.get("status") == "changed"]
    assert run.host["ok"] > 0


def test_plain_output_shows_task_counter_and_summary(launched: Launched) -> None:
    from tests.conftest import run_shuttle  # noqa: PLC0415

    run = run_shuttle(
        "launch", *ssh_args(launched.host, launched.tmp), "--check",
        config=stack_config(**SENTINEL_CONFIG), tmp=launched.tmp,
    )  # fmt: skip
    assert run.returncode == 0, run.explain()
    assert "[1/" in run.stdout and "preflight : " in run.stdout
    assert "changed" in run.stdout and "unreachable" in run.stdout  # the summary table's columns
    assert "log: " in run.stdout


def _shuttle_argv(launched: Launched, tmp: Path, *extra: str) -> list[str]:
    config = tmp / "shuttle.yml"
    config.write_text(json.dumps(stack_config(**SENTINEL_CONFIG)))
    return [sys.executable, "-m", "shuttle", "launch", *ssh_args(launched.host, tmp), "--config", str(config), *extra]


def test_terminal_gets_a_progress_bar(launched: Launched, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        _shuttle_argv(launched, tmp_path),
        stdin=follower, stdout=follower, stderr=follower, close_fds=True,
        env={**os.environ, "SHUTTLE_LOG_DIR": str(tmp_path / "logs"), "COLUMNS": "120", "TERM": "xterm"},
    )  # fmt: skip
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=900) == 0, output.decode(errors="replace")[-3000:]
    text = output.decode(errors="replace")
    assert "━" in text  # the bar
    assert "preflight : " in text and "/" in text  # the current task and done/total


def test_ctrl_c_cancels_and_exits_130(launched: Launched, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _shuttle_argv(launched, tmp_path, "--json"),
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "SHUTTLE_LOG_DIR": str(tmp_path / "logs")},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"task_start"' in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 130
    summary = json.loads(rest.strip().splitlines()[-1])
    assert summary["interrupted"] is True and summary["exit_code"] == 130


def test_no_secret_leaks_into_argv_logs_output_or_files(launched: Launched) -> None:
    host = launched.host
    generated = [host.exec(f"cat /etc/shuttle/secrets/{name}", check=True).stdout.strip() for name in GENERATED]
    assert all(len(secret) >= 16 for secret in generated)
    secrets = [SENTINEL, *generated]
    run = launched.run
    # Booleans first, so that a failing assertion names the leak without printing the secret itself.
    for index, secret in enumerate(secrets):
        on_command_line = any(secret in argv for argv in launched.argv_seen)
        in_output = secret in run.stdout or secret in run.stderr
        assert not on_command_line, f"secret #{index} was on a command line"
        assert not in_output, f"secret #{index} was in the NDJSON output"
    # Files: the run log, and anything ansible-runner or Ansible could have left on this machine or the host.
    places = [str(launched.tmp / "logs"), "/tmp", "/var/tmp", str(Path.home() / ".ansible")]
    places = [p for p in places if Path(p).exists()]
    for secret in secrets:
        # `-e`: a generated secret (token_urlsafe) may begin with "-" and must not be read as an option.
        grep = ["grep", "-rlF", "--exclude=shuttle.yml", "-e", secret, *places]
        found = subprocess.run(grep, capture_output=True, text=True, check=False).stdout.split("\n")
        # This checkout's own sources name the sentinel (a CI clone may sit under /tmp); nothing else may.
        left = [path for path in found if path and not Path(path).resolve().is_relative_to(REPO)]
        assert left == [], f"a secret was left in: {left}"
        on_host = host.exec(
            f"grep -rlF -e {shlex.quote(secret)} /tmp /var/tmp /root/.ansible /var/log 2>/dev/null;"
            f" journalctl | grep -cF -e {shlex.quote(secret)}"
        ).stdout.split()
        assert on_host == ["0"], on_host
