"""`shuttle launch` on a fresh minimal host, as a user runs it: check mode first, the launch, what it says,
a second launch that changes nothing, progress on a terminal and in a pipe, Ctrl-C, and no secret anywhere."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import sites
from tests.conftest import (
    SECRETS_DIR,
    SENTINEL,
    STACK_SECRETS,
    TIMEZONE,
    Launched,
    Site,
    boot_copy,
    differences,
    fingerprint,
    host_vars_for_tests,
    inventory,
    secret,
)
from tests.harness import hosts
from tests.webclient import Client

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[1]
#: Packages a minimal host lacks that a careless role might take for granted.
NOT_ON_A_MINIMAL_HOST = ("iproute2", "dbus", "ca-certificates", "curl", "gnupg")


def test_the_host_was_minimal_and_the_launch_succeeds_in_a_non_utc_time_zone(launched: Launched) -> None:
    packages = set(launched.packages_before.split())
    assert not packages & set(NOT_ON_A_MINIMAL_HOST), packages & set(NOT_ON_A_MINIMAL_HOST)
    assert launched.run.summary["exit_code"] == 0
    assert launched.host.exec("readlink /etc/localtime").stdout.strip() == f"/usr/share/zoneinfo/{TIMEZONE}"


def test_check_mode_on_the_fresh_host_changes_nothing(launched: Launched) -> None:
    assert launched.check_run.returncode == 0, launched.check_run.explain()
    assert launched.after_check == launched.before_check, differences(launched.before_check, launched.after_check)


def test_check_mode_on_a_fresh_debian_12_host_changes_nothing(provisioned_root: Launched) -> None:
    root = provisioned_root
    assert root.check_run.returncode == 0, root.check_run.explain()
    assert root.after_check == root.before_check, differences(root.before_check, root.after_check)


def test_json_is_one_object_per_line_with_a_final_summary(launched: Launched) -> None:
    events = launched.run.events  # every line parses as JSON
    assert events[0]["event"] == "start" and events[0]["total"] > 0
    results = [e for e in events if e["event"] == "task_result"]
    assert results and all({"host", "task", "status"} <= e.keys() for e in results)
    assert any(e["event"] == "task_start" and e["task"] for e in events)
    summary = launched.run.summary
    assert summary["event"] == "summary" and summary["exit_code"] == 0
    (name,) = summary["hosts"]
    assert summary["hosts"][name]["status"] == "ok" and summary["hosts"][name]["failed"] == 0
    assert Path(summary["log"]).is_file()


def test_the_run_names_an_address_to_open_and_where_the_password_is(launched: Launched, host_factory) -> None:
    notices = " ".join(launched.run.summary["notices"])
    assert f"{SECRETS_DIR}/openemr-admin-password" in notices
    (url,) = re.findall(r"OpenEMR is ready at (https://[^/ ]+/)", notices)
    address = url.removeprefix("https://").rstrip("/")
    assert address == launched.host.ip, f"the notice names {address}, which a browser on the network cannot reach"
    page = Client(host_factory("debian13")).request(address, "GET", "/interface/login/login.php")
    assert page.get("status") == 200, page


def containers(host: hosts.TestHost) -> dict[str, tuple[str, str]]:
    out = host.exec(
        "docker ps -aq | xargs -r docker inspect --format '{{.Name}} {{.Id}} {{.State.StartedAt}}'", check=True
    ).stdout
    return {name: (cid, started) for name, cid, started in (line.split() for line in out.splitlines())}


def _on_a_terminal(argv: list[str], env: dict) -> tuple[int, str]:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, close_fds=True, env=env)
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
    return proc.wait(timeout=1800), output.decode(errors="replace")


def test_check_mode_on_a_terminal_shows_a_bar_and_changes_nothing(launched: Launched, tmp_path: Path) -> None:
    config = tmp_path / "shuttle.yml"
    config.write_text(json.dumps(launched.config))
    before = fingerprint(launched.host)
    argv = [
        sys.executable,
        "-m",
        "shuttle",
        "launch",
        "-i",
        str(launched.inventory),
        "--config",
        str(config),
        "--check",
    ]
    env = {**os.environ, "SHUTTLE_LOG_DIR": str(tmp_path / "logs"), "COLUMNS": "120", "TERM": "xterm"}
    code, text = _on_a_terminal(argv, env)
    assert code == 0, text[-3000:]
    (log,) = (tmp_path / "logs").glob("*-launch-*.log")
    total = int(re.search(r"start launch \((\d+) host-tasks\)", log.read_text()).group(1))
    counters = [(int(done), int(shown)) for done, shown in re.findall(r"\b(\d+)/(\d+)\b", text) if int(shown) >= total]
    assert "━" in text and counters, text[-2000:]  # the bar, and its done/total
    assert all(done <= shown for done, shown in counters), counters
    after = fingerprint(launched.host)
    assert after == before, f"--check changed the converged host:\n{differences(before, after)}"
    summary = [line for line in log.read_text().splitlines() if " summary " in line]
    assert len(summary) == 1 and " changed=0 " in summary[0], summary


@sites.job("interruptible", needs=("launched",), weight=1)
def build_interruptible(session: sites.Session) -> Site:
    """A copy of the launched host of the test's own (an interrupted run may leave it half-converged), in an
    inventory under the launched host's name: a disk copy of a host, as a VM snapshot restored is, so the
    launched host's converged state is this one's too (a new name would be a new identity in the backups)."""
    launched = session.get("launched")
    copy, tmp = boot_copy(session, launched.snapshot), session.tmp("interruptible")
    listed = inventory(tmp / "inventory.yml", {launched.host.name: copy}, tmp, **host_vars_for_tests())
    return Site(copy, tmp, listed, launched.config)


@pytest.fixture(scope="module")
def interruptible(session: sites.Session) -> Site:
    return session.get("interruptible")


def test_ctrl_c_cancels_the_run_and_a_rerun_in_a_pipe_changes_nothing(interruptible: Site, tmp_path: Path) -> None:
    config = tmp_path / "shuttle.yml"
    config.write_text(json.dumps(interruptible.config))
    argv = [sys.executable, "-m", "shuttle", "launch", "-i", str(interruptible.inventory), "--config", str(config),
            "--json"]  # fmt: skip
    env = {**os.environ, "SHUTTLE_LOG_DIR": str(tmp_path / "logs"), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"task_result"' in line:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 130
    summary = json.loads(rest.strip().splitlines()[-1])
    assert summary["interrupted"] is True and summary["exit_code"] == 130
    group = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True, check=False).stdout.split()
    assert group == [], f"processes of the run outlived it: {group}"
    assert not list(tmp_path.glob("shuttle-run-*")), "the run's private directory (secrets) was left behind"

    # The rerun, in a pipe as an admin's script runs it: the host converges without a change (the interrupted run
    # left nothing half-done; a launch of a converged host changes nothing), counted as it goes.
    before = containers(interruptible.host)
    run = interruptible.launch()
    assert run.returncode == 0, run.explain()
    (counts,) = run.counts().values()
    assert counts["changed"] == 0 and counts["ok"] > 0, counts
    assert containers(interruptible.host) == before, "a launch that changes nothing recreated or restarted a container"
    counters = [(int(done), int(total)) for done, total in re.findall(r"^\[(\d+)/(\d+)\] ", run.stdout, re.MULTILINE)]
    assert len(counters) > 50 and all(done <= total for done, total in counters), counters[-5:]
    assert "preflight : " in run.stdout
    assert re.search(r"\bchanged\b.*\bunreachable\b", run.stdout)  # the summary table's columns
    assert f"log: {run.log}" in run.stdout


DROP_IN = "/etc/ssh/sshd_config.d/00-shuttle.conf"


def test_a_launch_after_drift_repairs_the_sshd_drop_in_fail2ban_a_ufw_rule_and_a_package(interruptible: Site) -> None:
    """What a fast no-op launch must still see: an admin's edit of the sshd drop-in, a stopped fail2ban, a
    firewall rule deleted by hand and a removed package (roles ask dpkg before they call apt) are each put
    back by the next launch, which reports them as changes."""
    host = interruptible.host
    wanted = host.exec(f"cat {DROP_IN}", check=True).stdout
    numbered = host.exec("ufw status numbered", check=True).stdout
    (rule,) = re.findall(r"^\[\s*(\d+)\]\s+443/tcp\s+ALLOW IN", numbered, re.MULTILINE)
    host.exec(f"echo 'PasswordAuthentication yes' >> {DROP_IN} && systemctl stop fail2ban"
              f" && ufw --force delete {rule} && dpkg --remove restic", check=True)  # fmt: skip
    assert host.exec("systemctl is-active fail2ban").stdout.strip() != "active"
    assert host.exec("command -v restic").returncode != 0
    assert not re.search(r"^443/tcp\s+ALLOW IN", host.exec("ufw status verbose", check=True).stdout, re.MULTILINE)

    run = interruptible.launch("--json")
    assert run.returncode == 0, run.explain()
    changed = {event["task"] for event in run.events if event.get("status") == "changed"}
    repairs = {
        "ssh : Write the sshd drop-in", "fail2ban : Start fail2ban now and at boot",
        "firewall : Allow the public ports", "backup : Install restic",
    }  # fmt: skip
    assert repairs <= changed, changed
    assert host.exec(f"cat {DROP_IN}", check=True).stdout == wanted
    assert "passwordauthentication no" in host.exec("sshd -T", check=True).stdout.splitlines()
    assert host.exec("systemctl is-active fail2ban").stdout.strip() == "active"
    assert re.search(r"^443/tcp\s+ALLOW IN", host.exec("ufw status verbose", check=True).stdout, re.MULTILINE)
    assert host.exec("restic version").returncode == 0


def _leak_places(launched: Launched) -> list[str]:
    places = [str(launched.tmp / "logs"), "/tmp", "/var/tmp", str(Path.home() / ".ansible")]
    return [place for place in places if Path(place).exists()]


def test_no_secret_reaches_a_command_line_the_output_a_log_or_a_file(launched: Launched) -> None:
    host = launched.host
    generated = [secret(host, name) for name in STACK_SECRETS]
    assert all(len(value) >= 16 for value in generated)
    values = [SENTINEL, *generated]
    run = launched.run
    assert len(launched.commands) > 500, "the exec log recorded too little to prove anything"
    # Booleans first, so that a failing assertion names the leak without printing the secret itself.
    for index, value in enumerate(values):
        on_command_line = [command[:60] for command in launched.commands if value in command]
        assert not on_command_line, f"secret #{index} was on a command line: {on_command_line}"
        assert value not in run.stdout + run.stderr, f"secret #{index} was in the NDJSON output"
        assert value not in launched.check_run.stdout, f"secret #{index} was in check mode's output"
    for value in values:
        # The secret goes to grep on stdin (`-f -`), never on its command line: the exec log of a drill recorded
        # meanwhile on a copy of this host (same secrets) would find it there.
        grep = ["grep", "-rlF", "--exclude=shuttle.yml", "--exclude=inventory.yml", "-f", "-", *_leak_places(launched)]
        found = subprocess.run(grep, capture_output=True, text=True, check=False, input=value + "\n").stdout
        # This checkout's own sources name the sentinel's prefix only; a CI clone may sit under /tmp.
        left = [path for path in found.split("\n") if path and not Path(path).resolve().is_relative_to(REPO)]
        assert left == [], f"a secret was left in: {left}"
        # runc writes each `docker exec`'s process spec, the container's whole environment included, to
        # /tmp/runc-process*: the stack's secrets are in container environments until the security issue takes
        # them out. Those files are left out by name here; that issue removes this exclusion.
        on_host = host.exec(
            'p=$(mktemp -p /run); cat > "$p";'  # /run: a place the grep does not read
            " grep -rlF --exclude='runc-process*' -f \"$p\" /tmp /var/tmp /root/.ansible /var/log 2>/dev/null;"
            ' journalctl | grep -cF -f "$p"; rm -f "$p"',
            input=value + "\n",
        ).stdout.split()
        assert on_host == ["0"], on_host
