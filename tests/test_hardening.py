"""Host hardening (roles base, ssh, sysctl, firewall, fail2ban) on real systemd test hosts.

Each distribution gets one fresh host, converged once and shared by every test of this module:
check mode on the fresh host, a first run, a second run that must change nothing, then SSH,
fail2ban and firewall checks from other hosts on the same Docker network, as an attacker and an
admin would see them. Nothing is mocked; the hosts are the harness' disposable systemd containers.

`converge()` runs ansible-playbook directly (see its docstring for why not the CLI); it takes the
same config the CLI validates and passes as the extra variable `shuttle`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.harness import hosts

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DISTROS = ("debian12", "debian13")
#: The last role of launch.yml these tests are about; later ones (Docker, the stack) have their own.
LAST_ROLE = "fail2ban"

pytestmark = [
    pytest.mark.hosts,
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs a Docker engine for test hosts"),
]

#: The config `shuttle launch` would pass after validation.
BASE_CONFIG = {
    "timezone": "Europe/Berlin",
    "swap_size_mb": 512,
    "ssh": {"port": 22, "allowed_sources": ["0.0.0.0/0", "::/0"], "admin_keys": []},
}


def _merge(base: dict, extra: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def converge(
    host: hosts.TestHost,
    extra_config: dict | None = None,
    *,
    check: bool = False,
    connection: str = "ssh",
    extra_vars: dict | None = None,
    through: str | None = LAST_ROLE,
) -> subprocess.CompletedProcess[str]:
    """Run playbooks/launch.yml on `host` with the test config merged with `extra_config`.

    Not `shuttle launch`: the CLI always runs the whole playbook (stack included) and takes no
    role variables, while these tests stop after the hardening roles and set test-only knobs. The play's roles run
    as launch.yml wires them, up to and including `through` (None: all of them), so these tests
    need neither the stack's images nor its settings. `connection="docker"` reaches the host with
    `docker exec` instead of SSH, standing in for a launch run on the host itself (a local
    connection) when no SSH key would let one in. `extra_vars` sets role variables the config
    does not carry (test-only knobs).
    """
    config = _merge(BASE_CONFIG, extra_config or {})
    with tempfile.TemporaryDirectory(prefix="shuttle-converge-") as tmp:
        playbook = Path(tmp) / "launch.yml"
        playbook.write_text(_launch_through(through))
        inventory = Path(tmp) / "inventory.ini"
        if connection == "docker":
            line = f"{host.name} ansible_connection=community.docker.docker ansible_host={host.name}"
        else:
            common = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
            line = (
                f"{host.name} ansible_host=127.0.0.1 ansible_port={host.ssh_port} ansible_user=root "
                f"ansible_ssh_private_key_file={host.key} ansible_ssh_common_args='{common}'"
            )
        inventory.write_text(line + "\n")
        extra = Path(tmp) / "extra.json"
        extra.write_text(json.dumps({"shuttle": config, **(extra_vars or {})}))
        env = {
            **os.environ,
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
        }
        argv = [
            str(VENV_BIN / "ansible-playbook"),
            "-i", str(inventory),
            "-e", f"@{extra}",
            *(["--check", "--diff"] if check else []),
            str(playbook),
        ]  # fmt: skip
        return subprocess.run(argv, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


def _launch_through(last: str | None) -> str:
    """launch.yml with each play's roles cut after `last`."""
    plays = yaml.safe_load((ROOT / "playbooks" / "launch.yml").read_text())
    for play in plays:
        names = [role["role"] if isinstance(role, dict) else role for role in play.get("roles", [])]
        if last is not None and last in names:
            play["roles"] = play["roles"][: names.index(last) + 1]
    return yaml.safe_dump(plays, sort_keys=False)


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters by host."""
    counters = {}
    for match in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", result.stdout, re.MULTILINE):
        counters[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return counters


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"rc={result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"


def _wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _tcp_open(client: hosts.TestHost, ip: str, port: int) -> bool:
    """True when `client` can open a TCP connection to ip:port (a reject or drop is False)."""
    probe = client.exec(f"timeout 4 bash -c '</dev/tcp/{ip}/{port}' 2>/dev/null")
    return probe.returncode == 0


def _ssh_from(client: hosts.TestHost, key: str, ip: str, port: int = 22) -> subprocess.CompletedProcess[str]:
    return client.exec(f"ssh {' '.join(hosts.ssh_options(Path(key)))} -p {port} root@{ip} true")


@dataclass
class Clients:
    """Two plain hosts on the test network: one plays an attacker, one an admin with a key."""

    attacker: hosts.TestHost
    admin: hosts.TestHost
    admin_public_key: str
    admin_key_path: str = "/root/.ssh/admin_key"
    wrong_key_path: str = "/root/.ssh/wrong_key"


@pytest.fixture(scope="session")
def clients() -> Iterator[Clients]:
    with tempfile.TemporaryDirectory(prefix="shuttle-admin-key-") as tmp:
        key = Path(tmp) / "admin_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "shuttle-test-admin", "-f", str(key)], check=True
        )
        attacker = hosts.start("debian13")
        admin = hosts.start("debian13")
        try:
            setup = Clients(
                attacker=attacker, admin=admin, admin_public_key=key.with_suffix(".pub").read_text().strip()
            )
            admin.exec(f"install -m 0600 /dev/stdin {setup.admin_key_path}", check=True, input=key.read_text())
            attacker.exec(f"ssh-keygen -q -t ed25519 -N '' -f {setup.wrong_key_path}", check=True)
            yield setup
        finally:
            attacker.destroy()
            admin.destroy()


@dataclass
class Converged:
    host: hosts.TestHost
    check_run: subprocess.CompletedProcess[str]
    first_run: subprocess.CompletedProcess[str]
    second_run: subprocess.CompletedProcess[str]
    first_seconds: float
    second_seconds: float


@pytest.fixture(scope="module", params=DISTROS)
def converged(request, clients: Clients) -> Iterator[Converged]:
    """A fresh host of one distribution: check mode, first run, second run."""
    host = hosts.start(request.param)
    try:
        # This machine reaches the hosts through the network's gateway, which also runs the
        # ssh-audit scan; keep fail2ban from banning it (the test's own setting, not the role's).
        gateway = hosts.gateway()
        host.exec(
            "mkdir -p /etc/fail2ban/jail.d && cat > /etc/fail2ban/jail.d/zz-shuttle-test.local",
            input=f"[sshd]\nignoreip = 127.0.0.1/8 ::1 {gateway}\n",
            check=True,
        )
        config = {"ssh": {"admin_keys": [clients.admin_public_key]}}
        # The test hosts have more memory than the swap threshold; raise it so swap is made.
        knobs = {"base_swap_memory_threshold_mb": 1_000_000}
        check_run = converge(host, config, check=True, extra_vars=knobs)
        start = time.monotonic()
        first = converge(host, config, extra_vars=knobs)
        first_seconds = time.monotonic() - start
        start = time.monotonic()
        second = converge(host, config, extra_vars=knobs) if first.returncode == 0 else first
        second_seconds = time.monotonic() - start
        yield Converged(host, check_run, first, second, first_seconds, second_seconds)
    finally:
        host.destroy()


def test_check_mode_on_fresh_host(converged: Converged) -> None:
    assert converged.check_run.returncode == 0, _explain(converged.check_run)


def test_converges(converged: Converged) -> None:
    assert converged.first_run.returncode == 0, _explain(converged.first_run)
    counters = recap(converged.first_run)[converged.host.name]
    assert counters["failed"] == 0 and counters["unreachable"] == 0
    print(f"first run {converged.first_seconds:.0f}s: {counters}")


def test_second_run_changes_nothing(converged: Converged) -> None:
    assert converged.second_run.returncode == 0, _explain(converged.second_run)
    counters = recap(converged.second_run)[converged.host.name]
    changed = re.findall(r"^changed: \[.*$", converged.second_run.stdout, re.MULTILINE)
    assert counters["changed"] == 0, _explain(converged.second_run)
    assert not changed
    print(f"second run {converged.second_seconds:.0f}s: {counters}")


def test_host_state(converged: Converged) -> None:
    host = converged.host
    assert host.exec("readlink /etc/localtime").stdout.strip().endswith("Europe/Berlin")
    # Swap file and exactly one fstab line; never activated in a container.
    assert host.exec("stat -c '%s %a' /swapfile").stdout.split() == [str(512 * 1024 * 1024), "600"]
    assert host.exec("grep -c '^/swapfile ' /etc/fstab").stdout.strip() == "1"
    assert host.exec("systemctl is-enabled systemd-timesyncd").stdout.strip() == "enabled"
    dump = host.exec("apt-config dump Unattended-Upgrade::Origins-Pattern").stdout
    assert "Debian-Security" in dump and 'label=Debian"' not in dump
    sysctl = host.exec(
        "sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.rp_filter net.ipv4.conf.all.log_martians"
    ).stdout
    assert sysctl.split() == ["1", "1", "1"]
    assert "Status: active" in host.exec("ufw status").stdout
    assert host.exec("systemctl is-active fail2ban").stdout.strip() == "active"
    effective = host.exec("sshd -T").stdout
    for line in ("passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin without-password"):
        assert line in effective


def test_ssh_audit_clean(converged: Converged) -> None:
    """ssh-audit 3.x: no failure and no warning (exit 0)."""
    audit = [str(VENV_BIN / "ssh-audit"), "--no-colors", "-p", str(converged.host.ssh_port), "127.0.0.1"]
    result = None
    for _ in range(6):
        result = subprocess.run(audit, check=False, capture_output=True, text=True, timeout=120)
        # OpenSSH 9.8+ briefly refuses a source that scans it ("Not allowed at this time").
        if "Not allowed at this time" not in result.stdout and "did not receive banner" not in result.stdout:
            break
        time.sleep(10)
    assert result is not None and result.returncode == 0, result.stdout


def test_failed_logins_get_banned(converged: Converged, clients: Clients) -> None:
    host, attacker, admin = converged.host, clients.attacker, clients.admin
    assert _ssh_from(admin, clients.admin_key_path, host.ip).returncode == 0, "admin key login failed before the attack"
    # Six logins with a key the host does not know, a few seconds apart: OpenSSH 9.8+ refuses a
    # source for a while after quick failures (PerSourcePenalties), before it could fail again.
    for attempt in range(6):
        if attempt:
            time.sleep(6)
        assert _ssh_from(attacker, clients.wrong_key_path, host.ip).returncode != 0
    try:
        _wait_for(
            lambda: attacker.ip in host.exec("fail2ban-client status sshd").stdout,
            timeout=30,
            what=f"fail2ban to ban {attacker.ip}",
        )
        assert not _tcp_open(attacker, host.ip, 22), "banned address can still connect"
        assert _ssh_from(admin, clients.admin_key_path, host.ip).returncode == 0, "admin key login failed after the ban"
        assert _ssh_from(admin, clients.admin_key_path, host.ip).returncode == 0
    finally:
        host.exec(f"fail2ban-client set sshd unbanip {attacker.ip}")


@pytest.fixture(scope="module")
def with_docker(converged: Converged) -> Converged:
    """Docker installed after the firewall, with containers publishing 80, 443 and 8081.

    No registry is reachable: the image is a busybox binary from Debian's busybox-static,
    imported as a one-file root filesystem. Host port 80 maps to container port 8080 and 443 to
    8443, so the rules are seen to match the published port, not the container's.
    """
    host = converged.host
    install = host.exec(
        # Debian 13 splits the CLI into docker-cli; Debian 12 has no such package.
        "export DEBIAN_FRONTEND=noninteractive; log=/tmp/docker-install.log;"
        " apt-get install -y -q docker.io docker-cli busybox-static >$log 2>&1"
        " || apt-get install -y -q docker.io busybox-static >>$log 2>&1"
    )
    assert install.returncode == 0, host.exec("tail -30 /tmp/docker-install.log").stdout
    host.exec(
        "set -e; mkdir -p /tmp/bb/bin /tmp/bb/www; cp /bin/busybox /tmp/bb/bin/busybox;"
        " echo ok > /tmp/bb/www/index.html;"
        " tar -C /tmp/bb -c . | docker import - shuttle-test/busybox:1 >/dev/null;"
        " for spec in 80:8080 443:8443 8081:8081; do"
        "   docker run -d --restart always --name web${spec%%:*} -p ${spec%%:*}:${spec##*:} shuttle-test/busybox:1"
        "     /bin/busybox httpd -f -p ${spec##*:} -h /www >/dev/null;"
        " done",
        check=True,
    )
    _wait_containers(host)
    return converged


# (busybox's own wget crashes on Debian 12 in these hosts.)
_FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"


def _wait_containers(host: hosts.TestHost) -> None:
    # From the host itself published ports answer whatever the firewall does with outside traffic.
    _wait_for(
        lambda: all(
            host.exec(f"python3 -c '{_FETCH}' http://127.0.0.1:{port}/ 2>/dev/null").stdout.strip() == "ok"
            for port in (80, 443, 8081)
        ),
        timeout=60,
        what="the test containers to answer",
    )


def _assert_published_ports_filtered(host: hosts.TestHost, clients: Clients) -> None:
    ip = host.ip
    assert _tcp_open(clients.attacker, ip, 80), "published port 80 not reachable from another host"
    assert _tcp_open(clients.attacker, ip, 443), "published port 443 not reachable from another host"
    assert not _tcp_open(clients.attacker, ip, 8081), "published port 8081 reachable from another host"
    # Port 22 is checked with a real login: bare connections count as failures for fail2ban.
    assert _ssh_from(clients.admin, clients.admin_key_path, ip).returncode == 0, "SSH not reachable"


def test_published_ports_filtered(with_docker: Converged, clients: Clients) -> None:
    _assert_published_ports_filtered(with_docker.host, clients)


def test_published_ports_filtered_after_docker_restart(with_docker: Converged, clients: Clients) -> None:
    host = with_docker.host
    host.exec("systemctl restart docker", check=True)
    _wait_containers(host)
    _assert_published_ports_filtered(host, clients)
    host.exec("ufw reload", check=True)
    _assert_published_ports_filtered(host, clients)


def test_docker_ban_action_reaches_containers(with_docker: Converged, clients: Clients) -> None:
    """The shuttle-docker action (the OpenEMR login jail's) blocks published ports, and keeps
    blocking across `ufw reload` and `systemctl restart docker`."""
    host, attacker = with_docker.host, clients.attacker
    jail = (
        "[shuttle-test-web]\nenabled = true\nfilter =\nbackend = systemd\n"
        "journalmatch = _SYSTEMD_UNIT=shuttle-test-none.service\nfailregex = ^never <HOST>$\n"
        "banaction = shuttle-docker\nport = 80,443\n"
    )
    host.exec("cat > /etc/fail2ban/jail.d/zz-shuttle-test-web.local", check=True, input=jail)
    try:
        host.exec("fail2ban-client reload", check=True)
        host.exec(f"fail2ban-client set shuttle-test-web banip {attacker.ip}", check=True)
        _wait_for(lambda: not _tcp_open(attacker, host.ip, 80), timeout=20, what="the web ban to apply")
        assert not _tcp_open(attacker, host.ip, 443)
        host.exec("ufw reload && systemctl restart docker", check=True)
        _wait_containers(host)
        assert not _tcp_open(attacker, host.ip, 80) and not _tcp_open(attacker, host.ip, 443)
        host.exec(f"fail2ban-client set shuttle-test-web unbanip {attacker.ip}", check=True)
        assert _tcp_open(attacker, host.ip, 80)
    finally:
        host.exec("rm -f /etc/fail2ban/jail.d/zz-shuttle-test-web.local && fail2ban-client reload")


def test_published_ports_filtered_after_reboot(with_docker: Converged, clients: Clients) -> None:
    host = with_docker.host
    subprocess.run(["docker", "restart", host.name], check=True, capture_output=True)
    info = json.loads(
        subprocess.run(["docker", "inspect", host.name], check=True, capture_output=True, text=True).stdout
    )[0]
    host.ip = info["NetworkSettings"]["Networks"][hosts.NETWORK]["IPAddress"]
    host.ssh_port = int(info["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
    _wait_for(
        lambda: host.exec("systemctl is-system-running").stdout.strip() in ("running", "degraded"),
        timeout=120,
        what="the host to boot",
    )
    _wait_containers(host)
    _assert_published_ports_filtered(host, clients)


def test_no_key_fails_and_leaves_sshd_alone(clients: Clients) -> None:
    """A user with no authorized key (here root, launching on the host itself): the run stops
    with one message naming the user, before sshd's configuration is touched."""
    host = clients.attacker
    host.exec("rm -f /root/.ssh/authorized_keys", check=True)
    fingerprint = "find /etc/ssh -type f -print0 | sort -z | xargs -0 sha256sum"
    before = host.exec(fingerprint).stdout
    result = converge(host, connection="docker")
    assert result.returncode != 0
    assert "user root has no public key in /root/.ssh/authorized_keys" in result.stdout, _explain(result)
    assert "TASK [ssh : Write the sshd drop-in]" not in result.stdout
    assert host.exec(fingerprint).stdout == before
