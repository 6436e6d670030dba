"""Bad input that only a host can show: a rejected SSH key and an unsupported OS are refused with exit 2,
naming the host, and neither changes anything on the host it was aimed at.

Every other bad input (config values, arguments, per-host settings, inventories, confirmations) is refused
before any host is contacted; tests/unit/runner/test_bad_input.py proves that without a host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_shuttle, ssh_args
from tests.harness import hosts

pytestmark = pytest.mark.hosts

#: Everywhere a run that got past its refusal would leave a trace on the host.
WATCHED = "/etc /opt /usr /srv /var/lib /var/log /tmp /home /root"


def changes(host: hosts.TestHost) -> str:
    """Files, with their size and mtime, where a run would write. Left out: what the SSH login itself writes
    (the journal, the login records) and directories' mtimes, which a module's own temporary directory,
    made and removed again, moves; the listing still shows any entry added or removed."""
    listing = host.exec(
        f"find {WATCHED} -xdev \\( -path /var/log/journal -o -path /var/lib/systemd/timers "
        "-o -path /var/log/wtmp -o -path /var/log/btmp -o -path /var/log/lastlog \\) -prune "
        "-o -type d -printf '%p/\\n' -o -printf '%p %s %T@\\n' | sort"
    )
    assert listing.returncode == 0, listing.stderr
    return listing.stdout


def test_a_rejected_ssh_key_exits_2_naming_the_host(host_factory, tmp_path: Path) -> None:
    host = host_factory("debian13")
    before = changes(host)
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    run = run_shuttle("launch", host.target, "--ssh-key", str(key), "--known-hosts", str(tmp_path / "kh"), tmp=tmp_path)
    assert run.returncode == 2, run.stdout[-2000:]
    name = host.target.split("@")[1].replace(":", "-")
    assert f"{name}: " in run.stdout and "Permission denied" in run.stdout
    assert changes(host) == before


def test_an_unsupported_os_is_refused_by_preflight(host_factory, tmp_path: Path) -> None:
    """A host claiming to be Debian 11, which Shuttle does not support."""
    host = host_factory("debian12")
    host.exec(
        'echo 11.11 > /etc/debian_version && sed -i \'s/^VERSION_ID=.*/VERSION_ID="11"/;'
        's/^VERSION=.*/VERSION="11 (bullseye)"/;s/^VERSION_CODENAME=.*/VERSION_CODENAME=bullseye/\' '
        "/usr/lib/os-release",
        check=True,
    )
    before = changes(host)
    run = run_shuttle("launch", *ssh_args(host, tmp_path), "--json", tmp=tmp_path)
    assert run.returncode == 2, run.explain()
    (line,) = [e["message"] for e in run.events if e.get("status") == "rejected"]
    assert line.startswith("unsupported OS Debian 11") and "supported: Debian 12/13, Ubuntu 22/24" in line, line
    assert changes(host) == before
