"""The `shuttle` command as a process: exit codes and one-line refusals come out of the real entry point,
and an unreachable host is reported as such. Starts no host."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.conftest import run_shuttle


def test_a_bad_config_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    run = run_shuttle("launch", "root@192.0.2.10", config={"tls": {"mode": "plaintext"}}, tmp=tmp_path)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "shuttle: config field 'tls.mode' = 'plaintext': Input should be 'self-signed', 'acme' or 'provided'"
    ]
    assert run.stdout == ""


def test_an_unreachable_host_exits_3(tmp_path: Path) -> None:
    with socket.socket() as held:  # bound, never listening: connections are refused, and nothing else takes it
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        run = run_shuttle(
            "launch", f"root@127.0.0.1:{port}", "--known-hosts", str(tmp_path / "kh"), "--json", tmp=tmp_path
        )
    assert run.returncode == 3, run.stdout[-2000:]
    result = run.summary["hosts"][f"127.0.0.1-{port}"]
    assert result["status"] == "unreachable" and "Connection refused" in result["message"]


def test_version_and_schema(tmp_path: Path) -> None:
    version = run_shuttle("version", tmp=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("shuttle ")
    assert {line.split()[0] for line in version.stdout.splitlines()} == {"shuttle", "ansible-core", "ansible-runner"}
    schema = run_shuttle("schema", tmp=tmp_path)
    assert schema.returncode == 0 and '"backup"' in schema.stdout
