"""Host hardening (roles base, ssh, sysctl, firewall, fail2ban) on launched Debian 12 and 13 hosts.

Each distribution's host is launched once through the CLI (tests/conftest.py) and shared by the checks that
only read it: the host's state, sshd's effective settings, a ban after repeated failed SSH logins from one
test host while a key login from another works. Checks that restart or reboot a host run on a copy of it:
ssh-audit (which this machine runs, so sshd's per-source penalties fall on a copy nobody else needs), a
container on a port the firewall does not allow, unreachable from another host, also after Docker
restarts, ufw reloads and the host reboots.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import sites
from tests.conftest import Launched, Site, boot_copy, inventory, run_shuttle, site, stack_config
from tests.harness import hosts

pytestmark = pytest.mark.hosts

VENV_BIN = Path(sys.executable).parent
#: The copies `copy` picks by distribution (tests/sites.py starts them before the tests ask).
PREFETCH = ("web_debian13", "web_debian12")
#: fail2ban_maxretry: failures within the find time that get an address banned.
SSH_MAX_FAILURES = 5


@pytest.fixture(scope="module", params=["debian13", "debian12"])
def converged(request) -> Site:
    """The session's launched hosts: Debian 13 (full mode), Debian 12 (empty mode; the hardening is the same)."""
    return request.getfixturevalue("launched" if request.param == "debian13" else "empty")


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    """Until `predicate()` is true; the deadline only bounds a broken run, it decides nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def tcp_open(client: hosts.TestHost, ip: str, port: int) -> bool:
    """True when `client` can open a TCP connection to ip:port (a reject or drop is False)."""
    return client.exec(f"timeout 4 bash -c '</dev/tcp/{ip}/{port}' 2>/dev/null").returncode == 0


def ssh_from(client: hosts.TestHost, key: str, ip: str) -> subprocess.CompletedProcess[str]:
    return client.exec(f"ssh {' '.join(hosts.ssh_options(Path(key)))} root@{ip} true")


@dataclass
class Clients:
    """Two plain hosts on the test network: one plays an attacker, one an admin with a key."""

    attacker: hosts.TestHost
    admin: hosts.TestHost
    admin_key_path: str = "/root/.ssh/admin_key"
    wrong_key_path: str = "/root/.ssh/wrong_key"


@pytest.fixture(scope="module")
def clients(host_factory) -> Clients:
    """The admin client logs in with the admin key the launches were given (`ssh.admin_keys`)."""
    setup = Clients(attacker=host_factory("debian13"), admin=host_factory("debian13"))
    setup.admin.exec(f"install -m 0600 /dev/stdin {setup.admin_key_path}", check=True,
                     input=hosts.admin_key().read_text())  # fmt: skip
    setup.attacker.exec(f"ssh-keygen -q -t ed25519 -N '' -f {setup.wrong_key_path}", check=True)
    return setup


def test_host_state(converged: Site) -> None:
    host, config = converged.host, converged.config
    assert host.exec("readlink /etc/localtime").stdout.strip().endswith(config["timezone"])
    # The configured swap file and exactly one fstab line; never activated in a container.
    swap_bytes = config["swap_size_mb"] * 1024 * 1024
    assert host.exec("stat -c '%s %a' /swapfile").stdout.split() == [str(swap_bytes), "600"]
    assert host.exec("grep -c '^/swapfile ' /etc/fstab").stdout.strip() == "1"
    assert host.exec("systemctl is-enabled systemd-timesyncd").stdout.strip() == "enabled"
    dump = host.exec("apt-config dump Unattended-Upgrade::Origins-Pattern").stdout
    assert "Debian-Security" in dump and 'label=Debian"' not in dump
    sysctl = host.exec("sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.rp_filter net.ipv4.conf.all.log_martians")
    assert sysctl.stdout.split() == ["1", "1", "1"], sysctl.stderr
    ufw = host.exec("ufw status verbose").stdout
    assert "Status: active" in ufw and "deny (incoming)" in ufw, ufw
    assert host.exec("systemctl is-active fail2ban").stdout.strip() == "active"
    assert re.search(r"Jail list:.*\bsshd\b", host.exec("fail2ban-client status").stdout)
    effective = host.exec("sshd -T").stdout
    for line in ("passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin without-password"):
        assert line in effective


def _assert_processes_hidden(host: hosts.TestHost) -> None:
    """A local user other than root sees only its own processes, and no command line of root's."""
    host.exec("id probe >/dev/null 2>&1 || useradd --create-home --shell /bin/sh probe", check=True)
    owners = "for p in /proc/[0-9]*; do stat -c %U $p; done 2>/dev/null | sort -u"
    assert "root" in host.exec(owners, check=True).stdout.split()  # the same look, as root, sees them
    assert host.exec(f"su probe -c '{owners}'", check=True).stdout.split() == ["probe"]
    assert host.exec("su probe -c 'cat /proc/1/cmdline'").returncode != 0


def test_other_users_see_only_their_own_processes(converged: Site) -> None:
    _assert_processes_hidden(converged.host)


def test_no_unit_failed(converged: Site) -> None:
    """systemd reached a good state: nothing in `systemctl --failed` (a failed backup, fail2ban, ... would be)."""
    state = converged.host.exec("systemctl is-system-running").stdout.strip()
    failed = converged.host.exec("systemctl --failed --plain --no-legend").stdout.strip()
    assert state == "running" and failed == "", f"{state}: {failed}"


def test_the_admin_key_from_the_config_is_authorized_whole(converged: Site) -> None:
    wanted = hosts.admin_key().with_suffix(".pub").read_text().strip()
    lines = converged.host.exec("cat /root/.ssh/authorized_keys").stdout.splitlines()
    assert wanted in [line.strip() for line in lines]


def failures_counted(host: hosts.TestHost) -> int:
    status = host.exec("fail2ban-client status sshd").stdout
    match = re.search(r"Total failed:\s+(\d+)", status)
    assert match, status
    return int(match.group(1))


def banned(host: hosts.TestHost) -> set[str]:
    return set(host.exec("fail2ban-client get sshd banip").stdout.split())


def failed_login(attacker: hosts.TestHost, key: str, ip: str) -> None:
    """One login that reaches authentication and fails. OpenSSH 9.8+ turns a source away for a while after a
    failure (PerSourcePenalties); a turned-away attempt is tried again until sshd answers it."""
    wait_for(lambda: "Permission denied" in ssh_from(attacker, key, ip).stderr, 120, "sshd to let the attempt in")


def test_failed_logins_get_banned_at_the_threshold(converged: Site, clients: Clients) -> None:
    host, attacker, admin = converged.host, clients.attacker, clients.admin
    assert ssh_from(admin, clients.admin_key_path, host.ip).returncode == 0, "admin key login failed before the attack"
    start = failures_counted(host)
    try:
        while True:
            seen = failures_counted(host)
            failed_login(attacker, clients.wrong_key_path, host.ip)
            wait_for(lambda seen=seen: failures_counted(host) > seen, 60, "fail2ban to count the failure")
            if failures_counted(host) - start >= SSH_MAX_FAILURES:
                break
            assert attacker.ip not in banned(host), "banned before the threshold"
        wait_for(lambda: attacker.ip in banned(host), 60, f"fail2ban to ban {attacker.ip}")
        assert banned(host) == {attacker.ip}
        assert not tcp_open(attacker, host.ip, 22), "banned address can still connect"
        assert ssh_from(admin, clients.admin_key_path, host.ip).returncode == 0, "admin key login failed after the ban"
    finally:
        host.exec(f"fail2ban-client set sshd unbanip {attacker.ip}")


# --- a copy of each host for what restarts or reboots it -----------------------------------------------------


@pytest.fixture(scope="module")
def copy(converged: Site, session: sites.Session) -> Iterator[hosts.TestHost]:
    """A copy of the host, with a web container on a port the firewall does not allow."""
    name = "web_debian13" if converged.host.distro == "debian13" else "web_debian12"
    yield session.get(name)
    session.release(name)


def test_ssh_audit_clean(copy: hosts.TestHost) -> None:
    """ssh-audit 3.x: no failure and no warning (exit 0)."""
    audit = [str(VENV_BIN / "ssh-audit"), "--no-colors", "-p", str(copy.ssh_port), "127.0.0.1"]

    def scan() -> subprocess.CompletedProcess[str] | None:
        result = subprocess.run(audit, check=False, capture_output=True, text=True, timeout=120)
        # OpenSSH 9.8+ turns away a source that scans it for a while ("Not allowed at this time"): scan again then.
        refused = "Not allowed at this time" in result.stdout or "did not receive banner" in result.stdout
        return None if refused else result

    result = wait_for(scan, 300, "sshd to let the scan in", interval=5)
    assert result.returncode == 0, result.stdout


def with_web(copy: hosts.TestHost) -> hosts.TestHost:
    """The copy with a container publishing host port 8081 (not allowed) to container port 443 (allowed): the
    firewall must match the port published on the host, not the container's. The proxy publishes 80 and 443.

    No registry is reachable: the image is a busybox binary from Debian's busybox-static, imported as a one-file
    root filesystem.
    """
    install = copy.exec("DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/tmp/bb.log 2>&1")
    assert install.returncode == 0, copy.exec("tail -20 /tmp/bb.log").stdout
    copy.exec(
        "set -e; mkdir -p /tmp/bb/bin /tmp/bb/www; cp /bin/busybox /tmp/bb/bin/busybox;"
        " echo ok > /tmp/bb/www/index.html;"
        " tar -C /tmp/bb -c . | docker import - shuttle-test/busybox:1 >/dev/null;"
        " docker run -d --restart always --name web8081 -p 8081:443 shuttle-test/busybox:1"
        " /bin/busybox httpd -f -p 443 -h /www >/dev/null",
        check=True,
    )
    _wait_containers(copy)
    return copy


@sites.job("web_debian13", needs=("launched",), weight=1.5)
def build_web_debian13(session: sites.Session) -> hosts.TestHost:
    return with_web(boot_copy(session, session.get("launched").snapshot))


@sites.job("web_debian12", needs=("empty",), weight=1.5)
def build_web_debian12(session: sites.Session) -> hosts.TestHost:
    return with_web(boot_copy(session, session.get("empty").snapshot))


def _answers(host: hosts.TestHost, url: str) -> bool:
    script = (
        "import sys, ssl, urllib.request;"
        " urllib.request.urlopen(sys.argv[1], timeout=3, context=ssl._create_unverified_context())"
    )
    return host.exec(f"python3 -c '{script}' {url} 2>/dev/null").returncode == 0


def _wait_containers(host: hosts.TestHost) -> None:
    # From the host itself published ports answer whatever the firewall does with outside traffic.
    wait_for(
        lambda: _answers(host, "http://127.0.0.1:8081/") and _answers(host, "https://127.0.0.1:443/"),
        120, "the web containers to answer",
    )  # fmt: skip


def _assert_published_ports_filtered(host: hosts.TestHost, clients: Clients) -> None:
    ip = host.ip
    assert tcp_open(clients.attacker, ip, 80), "published port 80 not reachable from another host"
    assert tcp_open(clients.attacker, ip, 443), "published port 443 not reachable from another host"
    assert not tcp_open(clients.attacker, ip, 8081), "published port 8081 reachable from another host"
    # Port 22 is checked with a real login: bare connections count as failures for fail2ban.
    assert ssh_from(clients.admin, clients.admin_key_path, ip).returncode == 0, "SSH not reachable"


def test_published_ports_filtered(copy: hosts.TestHost, clients: Clients) -> None:
    _assert_published_ports_filtered(copy, clients)


def test_published_ports_filtered_after_docker_restart_and_ufw_reload(copy: hosts.TestHost, clients: Clients) -> None:
    copy.exec("systemctl restart docker", check=True)
    _wait_containers(copy)
    _assert_published_ports_filtered(copy, clients)
    copy.exec("ufw reload", check=True)
    _assert_published_ports_filtered(copy, clients)


def test_docker_ban_action_reaches_containers(copy: hosts.TestHost, clients: Clients) -> None:
    """The shuttle-docker action (the OpenEMR login jail's) blocks published ports, and keeps
    blocking across `ufw reload` and `systemctl restart docker`."""
    host, attacker = copy, clients.attacker
    jail = (
        "[shuttle-test-web]\nenabled = true\nfilter =\nbackend = systemd\n"
        "journalmatch = _SYSTEMD_UNIT=shuttle-test-none.service\nfailregex = ^never <HOST>$\n"
        "banaction = shuttle-docker\nport = 80,443\n"
    )
    host.exec("cat > /etc/fail2ban/jail.d/zz-shuttle-test-web.local", check=True, input=jail)
    try:
        host.exec("fail2ban-client reload", check=True)
        host.exec(f"fail2ban-client set shuttle-test-web banip {attacker.ip}", check=True)
        wait_for(lambda: not tcp_open(attacker, host.ip, 80), 60, "the web ban to apply")
        assert not tcp_open(attacker, host.ip, 443)
        host.exec("ufw reload && systemctl restart docker", check=True)
        _wait_containers(host)
        assert not tcp_open(attacker, host.ip, 80) and not tcp_open(attacker, host.ip, 443)
        host.exec(f"fail2ban-client set shuttle-test-web unbanip {attacker.ip}", check=True)
        assert tcp_open(attacker, host.ip, 80)
    finally:
        host.exec("rm -f /etc/fail2ban/jail.d/zz-shuttle-test-web.local && fail2ban-client reload")


def test_published_ports_filtered_and_processes_hidden_after_reboot(copy: hosts.TestHost, clients: Clients) -> None:
    subprocess.run(["docker", "restart", copy.name], check=True, capture_output=True)
    copy.refresh()
    booted = ("running", "degraded", "maintenance")
    wait_for(lambda: copy.exec("systemctl is-system-running").stdout.strip() in booted, 180, "the host to boot")
    state = copy.exec("systemctl is-system-running").stdout.strip()
    assert state == "running", f"{state}: {copy.exec('systemctl --failed --plain --no-legend').stdout.strip()}"
    _wait_containers(copy)
    _assert_published_ports_filtered(copy, clients)
    _assert_processes_hidden(copy)


# --- the lockout guard ---------------------------------------------------------------------------------------


def test_no_key_fails_and_leaves_sshd_alone(host_factory, tmp_path: Path) -> None:
    """A user with no authorized key (root, launching on the host itself, here reached with `docker exec`):
    the run stops with one message naming the user, before sshd's configuration is touched."""
    host = host_factory("debian13")
    host.exec("rm -f /root/.ssh/authorized_keys", check=True)
    fingerprint = "find /etc/ssh -type f -print0 | sort -z | xargs -0 sha256sum"
    before = host.exec(fingerprint).stdout
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {host.name: {
        "ansible_connection": "community.docker.docker", "ansible_host": host.name}}}}))  # fmt: skip
    run = run_shuttle("launch", "-i", str(inventory), "--json", config=stack_config(), tmp=tmp_path)
    assert run.returncode == 1, run.explain()
    assert "user root has no public key in /root/.ssh/authorized_keys" in run.failures, run.explain()
    assert not any(e.get("task") == "ssh : Write the sshd drop-in" for e in run.events)
    assert host.exec(fingerprint).stdout == before


def test_the_ssh_rules_follow_narrowed_sources_and_a_new_port(
    clone, launched: Launched, launched_snapshot: hosts.Snapshot, clients: Clients, tmp_path: Path
) -> None:
    """ufw only ever adds rules: the launch removes the SSH rules the config no longer lists. A config that would
    shut out the address the run connects from is refused before any rule is removed; narrowed to the run's own
    address and the admin's, the attacker host can no longer reach SSH and the admin still can; a new port
    closes the old one. Addresses in trusted_sources are never banned, and a run from outside them says so."""
    host = clone(launched_snapshot)
    gateway = hosts.gateway(hosts.ensure_network())  # where this machine's SSH reaches the hosts from
    admin = f"{clients.admin.ip}/32"
    base = site(host, tmp_path, launched.config)
    assert tcp_open(clients.attacker, host.ip, 22) and tcp_open(clients.admin, host.ip, 22)

    locked_out = {**launched.config, "ssh": {**launched.config["ssh"], "allowed_sources": [admin]}}
    run = base.launch("--json", config=locked_out)
    assert run.returncode == 1, run.explain()
    assert f"ssh.allowed_sources does not include {gateway}, the address this run connects from" in run.failures
    assert tcp_open(clients.attacker, host.ip, 22), "a refused run removed a rule"

    narrowed = {**launched.config, "ssh": {**launched.config["ssh"], "allowed_sources": [f"{gateway}/32", admin]}}
    run = base.launch("--json", config=narrowed)
    assert run.returncode == 0, run.explain()
    assert not tcp_open(clients.attacker, host.ip, 22) and tcp_open(clients.admin, host.ip, 22)
    assert ssh_from(clients.admin, clients.admin_key_path, host.ip).returncode == 0

    # The port moves; the admin's network becomes trusted_sources, and this machine's address is no longer in the
    # inventory's fail2ban_ignoreip, so the run names it as one fail2ban would ban.
    moved = {**narrowed, "ssh": {**narrowed["ssh"], "port": 2222}, "trusted_sources": [admin]}
    untrusted = inventory(tmp_path / "untrusted.yml", {host.name: host}, tmp_path, base_swap_memory_threshold_mb=10**6)
    run = run_shuttle("launch", "-i", str(untrusted), "--json", config=moved, tmp=tmp_path)
    assert run.returncode == 0, run.explain()
    assert tcp_open(clients.admin, host.ip, 2222) and not tcp_open(clients.attacker, host.ip, 2222)
    rules = host.exec("ufw status", check=True).stdout
    assert re.search(r"^22/tcp ", rules, re.MULTILINE) is None and "2222/tcp" in rules, rules
    assert any(f"the one this run came from ({gateway})" in notice for notice in run.summary["notices"]), run.summary
    assert clients.admin.ip in host.exec("fail2ban-client get sshd ignoreip", check=True).stdout
