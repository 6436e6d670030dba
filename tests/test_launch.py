"""`shuttle launch` against a real test host, as a user runs it: progress, summary, JSON, re-runs, secrets."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import run_shuttle, ssh_args

SENTINEL = "sentinel-5b1f0c-do-not-leak"
SENTINEL_CONFIG = {
    "backup": {
        "target": "s3:https://s3.example.org/clinic-backups",
        "s3_access_key_id": "AKIASHUTTLETEST",
        "s3_secret_access_key": SENTINEL,
    }
}


def _scan_processes(stop: threading.Event, host, seen: list[str]) -> None:
    """Look at every process's argv, here and on the host, until told to stop."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if SENTINEL in argv:
                    seen.append(f"controller: {argv}")
        remote = host.exec("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '").stdout
        if SENTINEL in remote:
            seen.append("host: a process argv")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def launched(host_factory, tmp_path_factory):
    """A debian13 host after one `shuttle launch --json`, watched for the sentinel secret in every argv."""
    host = host_factory("debian13")
    tmp = tmp_path_factory.mktemp("launch")
    seen: list[str] = []
    stop = threading.Event()
    scanner = threading.Thread(target=_scan_processes, args=(stop, host, seen), daemon=True)
    scanner.start()
    try:
        run = run_shuttle("launch", *ssh_args(host, tmp), "--json", config=SENTINEL_CONFIG, tmp=tmp)
    finally:
        stop.set()
        scanner.join()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return host, tmp, run, seen


def test_json_is_one_object_per_line_with_a_final_summary(launched) -> None:
    host, _, run, _ = launched
    events = run.events  # every line parses as JSON
    assert events[0]["event"] == "start" and events[0]["total"] > 0
    results = [e for e in events if e["event"] == "task_result"]
    assert results and all({"host", "task", "status"} <= e.keys() for e in results)
    assert any(e["event"] == "task_start" and e["task"] for e in events)
    summary = run.summary
    assert summary["event"] == "summary" and summary["exit_code"] == 0
    name = host.target.split("@")[1].replace(":", "-")
    assert summary["hosts"][name]["status"] == "ok"
    assert summary["hosts"][name]["failed"] == 0
    assert Path(summary["log"]).is_file()


def test_second_launch_changes_nothing(launched) -> None:
    host, tmp, _, _ = launched
    run = run_shuttle("launch", *ssh_args(host, tmp), "--json", config=SENTINEL_CONFIG, tmp=tmp)
    assert run.returncode == 0, run.stdout[-4000:]
    (result,) = run.summary["hosts"].values()
    assert result["changed"] == 0, [e for e in run.events if e.get("status") == "changed"]
    assert result["ok"] > 0


def test_plain_output_shows_task_counter_and_summary(launched) -> None:
    host, tmp, _, _ = launched
    run = run_shuttle("launch", *ssh_args(host, tmp), "--check", config=SENTINEL_CONFIG, tmp=tmp)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "[1/" in run.stdout and "preflight : " in run.stdout
    assert "changed" in run.stdout and "unreachable" in run.stdout  # the summary table's columns
    assert "log: " in run.stdout


def test_terminal_gets_a_progress_bar(launched, tmp_path) -> None:
    host, _, _, _ = launched
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shuttle", "launch", *ssh_args(host, tmp_path)],
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
    assert proc.wait(timeout=600) == 0
    text = output.decode(errors="replace")
    assert "━" in text  # the bar
    assert "/" in text and "preflight" in text  # done/total and the current task


def test_sentinel_secret_leaks_nowhere(launched) -> None:
    host, tmp, run, seen = launched
    assert seen == []
    assert SENTINEL not in run.stdout and SENTINEL not in run.stderr
    # Files: the run log, and anything ansible-runner or Ansible could have left on this machine.
    places = [str(tmp / "logs"), "/tmp", "/var/tmp", str(Path.home() / ".ansible")]
    found = subprocess.run(
        ["grep", "-rl", "--exclude=shuttle.yml", SENTINEL, *[p for p in places if Path(p).exists()]],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    assert found.strip() == "", found
    on_host = host.exec(
        f"grep -rl {SENTINEL} /tmp /var/tmp /root/.ansible /var/log 2>/dev/null; journalctl | grep -c {SENTINEL}"
    ).stdout.split()
    assert on_host == ["0"], on_host


def test_ctrl_c_cancels_and_exits_130(launched, tmp_path) -> None:
    host, _, _, _ = launched
    proc = subprocess.Popen(
        [sys.executable, "-m", "shuttle", "launch", *ssh_args(host, tmp_path), "--json"],
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
