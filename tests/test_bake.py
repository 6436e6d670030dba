"""Baked images: `shuttle bake` and `shuttle seal` on a copy of the provisioned Debian 12 host, then instances
of its image, offline.

The image is made as an image baker makes one: bake, seal, shut down, and save the disk. A test host's disk
is its container (`docker commit`) plus its /var/lib/docker volume (a separate volume only because nested
overlay2 needs one), so the image is that commit plus a copy of that volume per instance, as a cloned disk.
Instances boot on a network with no route anywhere (no mirror, registry or apt cache) and are reached out
of band; a client host on the same network makes the browser requests and reads the SSH host keys.

One instance gets cloud-init-style user-data (`shuttle: {admin_password_hash}`, written where cloud-init
keeps its copy), the other a dropped /etc/shuttle/firstboot.yml (a domain); a third a bad setting, which
its first boot must refuse without starting anything.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests import sites
from tests.conftest import AGENT, LAYOUT, SECRETS_DIR, Run, boot_copy, run_shuttle, ssh_args, stack_config
from tests.harness import hosts, images
from tests.standins import IMAGES
from tests.webclient import Client

pytestmark = pytest.mark.hosts

OFFLINE = "shuttle-offline"
SECRET_NAMES = ("db-root-password", "db-password", "openemr-admin-password")
UNITS = LAYOUT["units"]
ADMIN = "clinicadmin"
CHOSEN_PASSWORD = "chosen-at-first-boot-" + secrets.token_hex(4)
DOMAIN_B = "emr-b.example.org"
REPO_B = "/var/backups/shuttle-repository"


def docker(*args: str, input: str | None = None) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, input=input).stdout


@dataclass
class Baked:
    """The baked host's state before sealing, the seal runs, and the image made from it."""

    image: str
    volume: str
    bake: Run
    seals: list[Run]
    before_seal: dict[str, str]
    #: The seal's probes just before it ran: each item was there to clear.
    left_behind: dict[str, str]
    after_seal: dict[str, str]


def probe(host: hosts.TestHost, commands: dict[str, str]) -> dict[str, str]:
    return {key: host.exec(command).stdout.strip() for key, command in commands.items()}


BEFORE_SEAL = {
    "secrets": f"ls -A {SECRETS_DIR}",
    "containers": "docker ps -aq | wc -l",
    "images": "docker image ls --format '{{.Repository}}:{{.Tag}}'",
    "firstboot": f"systemctl is-enabled {UNITS['firstboot']}.service",
    "env": f"test -e {LAYOUT['compose_dir']}/.env && echo present || echo absent",
    "backup_timer": f"systemctl is-enabled {UNITS['backup']}.timer",
    "backup_unit": f"systemctl cat {UNITS['backup']}.service >/dev/null && echo installed || echo missing",
}
#: One probe per item the README says `seal` clears; each prints 0 (or "") when the item is cleared.
AFTER_SEAL = {
    "machine_id": "cat /etc/machine-id",
    "host_keys": "ls /etc/ssh/ | grep -c '^ssh_host_' || true",
    # The baker's keys (this harness's, root's) must not open every instance.
    "authorized_keys": "find /root/.ssh /home -name 'authorized_keys*' 2>/dev/null | wc -l",
    "secrets": f"ls -A {SECRETS_DIR} 2>/dev/null | wc -l",
    "env": f"test -e {LAYOUT['compose_dir']}/.env && echo 1 || echo 0",
    "apt_lists": "find /var/lib/apt/lists -type f ! -name lock | wc -l",
    "apt_cache": "find /var/cache/apt/archives -name '*.deb' | wc -l",
    "histories": "find /root /home -maxdepth 2 -name .bash_history | wc -l",
    "logs": "find /var/log -type f -size +0 ! -name '*.journal' | wc -l",
    "journal": "journalctl --no-pager -q | grep -c shuttle-bake-test || true",
    "cloud_init": "find /var/lib/cloud -mindepth 1 2>/dev/null | wc -l",
    "dhcp_leases": "find /var/lib/dhcp -type f 2>/dev/null | wc -l",
    "random_seed": "test -e /var/lib/systemd/random-seed && echo 1 || echo 0",
    "firstboot_done": f"test -e {LAYOUT['firstboot_done']} && echo 1 || echo 0",
    "backup_state": f"test -e {LAYOUT['backup_record']} && echo 1 || echo 0",
    "fail2ban_db": "test -e /var/lib/fail2ban/fail2ban.sqlite3 && echo 1 || echo 0",
    "firstboot": f"systemctl is-enabled {UNITS['firstboot']}.service",
    "keygen_unit": f"systemctl is-enabled {UNITS['ssh_host_keys']}.service",
}


def bake_and_seal(session: sites.Session) -> Baked:
    host = boot_copy(session, session.get("provisioned").snapshot, stack=False)
    tmp = session.tmp("bake")
    config = stack_config(admin_user=ADMIN)
    bake = run_shuttle("bake", *ssh_args(host, tmp), "--json", config=config, tmp=tmp)
    assert bake.returncode == 0, bake.explain()
    before = probe(host, BEFORE_SEAL)
    # What an image baker and a cloud leave behind, which sealing must clear.
    host.exec(
        "echo 'cat /etc/shadow' > /root/.bash_history; logger shuttle-bake-test; echo x >> /var/log/baker.log;"
        " mkdir -p /var/lib/cloud/instance /var/lib/dhcp; echo lease > /var/lib/dhcp/dhclient.eth0.leases;"
        " echo '#cloud-config' > /var/lib/cloud/instance/user-data.txt; touch /var/cache/apt/archives/x.deb;"
        # What a container never makes by itself (systemd-random-seed does not run in one) or only an instance
        # does: the first-boot mark, the backup record.
        f" touch /var/lib/systemd/random-seed {LAYOUT['firstboot_done']} {LAYOUT['backup_record']};"
        # and what a launch by mistake would have made: a secret, the env file.
        f" mkdir -p {SECRETS_DIR} && touch {SECRETS_DIR}/made-by-mistake {LAYOUT['compose_dir']}/.env"
    )
    left_behind = probe(host, AFTER_SEAL)
    seals = [run_shuttle("seal", *ssh_args(host, tmp), "--yes", "--json", tmp=tmp) for _ in range(2)]
    after = probe(host, AFTER_SEAL)
    volume = hosts.docker_volume(host)
    docker("stop", "--time", "120", host.name)
    image = f"shuttle-test/baked:{host.name}"
    docker("commit", host.name, image)
    session.snapshots.append(hosts.Snapshot(image, volume, host.distro))  # removed with the session's snapshots
    return Baked(image, volume, bake, seals, before, left_behind, after)


@dataclass
class Instance:
    host: hosts.TestHost
    volume: str
    state: dict[str, str] = field(default_factory=dict)

    def secret(self, name: str) -> str:
        return self.host.exec(f"cat {SECRETS_DIR}/{name}").stdout.strip()


def wait_first_boot(instance: Instance, timeout: float = 900) -> str:
    """The first-boot unit's final state: inactive (finished, disabled) or failed."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = instance.host.exec(f"systemctl show -p ActiveState --value {UNITS['firstboot']}.service").stdout.strip()
        done = instance.host.exec(f"test -e {LAYOUT['firstboot_done']}").returncode == 0
        if state == "failed" or (done and state != "activating"):
            return state
        time.sleep(5)
    journal = instance.host.exec(f"journalctl -u {UNITS['firstboot']} --no-pager | tail -n 30").stdout
    raise AssertionError(f"first boot of {instance.host.name} did not finish in {timeout}s ({state}):\n{journal}")


def admin_hash(password: str) -> str:
    """A PHP password_hash() of `password`, made by the stand-in OpenEMR image's own PHP (password on stdin)."""
    return docker(
        "run", "--rm", "-i", "--network", "none", "--entrypoint", "php", IMAGES["openemr"],
        "-r", "echo password_hash(trim(stream_get_contents(STDIN)), PASSWORD_BCRYPT);", input=password,
    ).strip()  # fmt: skip


@dataclass
class Fleet:
    a: Instance
    b: Instance
    bad: Instance
    client: Client


class OfflineNetwork:
    def stop(self) -> None:
        hosts.remove_offline_network(OFFLINE)


@sites.job("bake", needs=("provisioned",), weight=5)
def build_bake(session: sites.Session) -> tuple[Baked, Fleet]:
    """Bake and seal a copy of the provisioned host, save it as an image, boot three instances of it offline."""
    baked = bake_and_seal(session)
    hosts.offline_network(OFFLINE)
    session.resources["offline-network"] = OfflineNetwork()
    suffix = secrets.token_hex(3)
    user_data = "#cloud-config\n" + yaml.safe_dump({"shuttle": {"admin_password_hash": admin_hash(CHOSEN_PASSWORD)}})
    seeds = {
        "a": {LAYOUT["cloud_user_data"]: user_data},
        "b": {LAYOUT["firstboot_seed"]: yaml.safe_dump({"domain": DOMAIN_B, "backup": {"target": REPO_B}})},
        "bad": {LAYOUT["firstboot_seed"]: yaml.safe_dump({"domain": "not a domain"})},
    }
    started: dict[str, Instance] = {}

    def boot(image: str, name: str, volume: str, files: dict[str, str] | None = None) -> hosts.TestHost:
        booted = hosts.boot(image, name=name, network=OFFLINE, volume=volume, files=files)
        booted.volume = volume
        session.own(booted)  # removed, with its volume, with the job's other hosts
        return booted

    for key, files in seeds.items():
        name = f"shuttle-th-instance-{key}-{suffix}"
        hosts.copy_volume(baked.volume, f"{name}-docker", image=baked.image)
        started[key] = Instance(boot(baked.image, name, f"{name}-docker", files), f"{name}-docker")
    client_volume = f"shuttle-th-client-{suffix}-docker"
    docker("volume", "create", "--label", hosts.LABEL, client_volume)
    client_host = boot(images.build(images.RECIPES["debian13"]), f"shuttle-th-client-{suffix}", client_volume)
    for key in ("a", "b", "bad"):
        started[key].state["firstboot"] = wait_first_boot(started[key])
    return baked, Fleet(started["a"], started["b"], started["bad"], Client(client_host))


@pytest.fixture(scope="module")
def bake(session: sites.Session) -> tuple[Baked, Fleet]:
    return session.get("bake")


@pytest.fixture(scope="module")
def baked(bake: tuple[Baked, Fleet]) -> Baked:
    return bake[0]


@pytest.fixture(scope="module")
def instances(bake: tuple[Baked, Fleet]) -> Fleet:
    return bake[1]


# --- bake and seal ---------------------------------------------------------------------------------


def test_bake_loads_the_images_but_starts_nothing_and_generates_no_secret(baked: Baked) -> None:
    state = baked.before_seal
    assert state["secrets"] == "", f"secrets generated at bake time: {state['secrets']}"
    assert state["containers"] == "0"
    assert state["env"] == "absent"
    assert set(IMAGES.values()) <= set(state["images"].split()), state["images"]
    assert state["firstboot"] == "enabled"
    assert state["backup_unit"] == "installed"
    assert state["backup_timer"] == "disabled", "backup timers must wait for the instance's passphrase"
    assert any("seal" in notice for notice in baked.bake.summary["notices"]), baked.bake.summary["notices"]


def test_seal_clears_what_must_differ_per_instance_and_is_safe_twice(baked: Baked) -> None:
    for run in baked.seals:
        assert run.returncode == 0, run.explain()
    # Every probe saw its item before the seal (so "0" after it means cleared, not never there).
    there = dict(baked.left_behind)
    there.pop("keygen_unit")  # seal installs it
    assert there.pop("firstboot") == "enabled", baked.left_behind
    missing = {item: count for item, count in there.items() if count in ("", "0")}
    assert missing == {}, f"nothing to clear, so the probe proves nothing: {missing}"
    state = dict(baked.after_seal)
    assert (state.pop("firstboot"), state.pop("keygen_unit")) == ("enabled", "enabled")
    assert state.pop("machine_id") == ""
    left = {item: count for item, count in state.items() if count != "0"}
    assert left == {}, f"sealing left: {left}"


# --- instances -------------------------------------------------------------------------------------


def test_instances_have_no_route_to_mirrors_or_registries(instances: Fleet) -> None:
    gateway = hosts.gateway()  # this machine's apt cache listens there
    script = (
        "import socket, sys\n"
        "for host, port in ((sys.argv[1], 3142), ('deb.debian.org', 80), ('registry-1.docker.io', 443)):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=3).close(); print('reached', host)\n"
        "    except OSError:\n"
        "        print('unreached')\n"
    )
    out = instances.a.host.exec(f'python3 -c "{script}" {gateway}')
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:-1] == ["unreached"] * 3, out.stdout
    # The same probe here, where the apt cache listens, reaches it: the probe can tell.
    here = subprocess.run([sys.executable, "-c", script, gateway], capture_output=True, text=True, check=True)
    assert here.stdout.split("\n")[0] == f"reached {gateway}", here.stdout


def test_both_instances_reach_ready_with_their_own_secrets_and_identity(instances: Fleet) -> None:
    a, b = instances.a, instances.b
    for instance in (a, b):
        assert instance.state["firstboot"] == "inactive", instance.host.exec(
            f"journalctl -u {UNITS['firstboot']}"
        ).stdout
        verdict = instance.host.exec(f"{AGENT} stack wait --timeout 0")
        assert verdict.returncode == 0, verdict.stdout
    for name in SECRET_NAMES:
        assert a.secret(name) and b.secret(name), name
        assert a.secret(name) != b.secret(name), f"{name} is the same on both instances"
    mode = a.host.exec(f"stat -c %a {SECRETS_DIR}/db-root-password").stdout.strip()
    assert mode == "600"
    ids = [i.host.exec("cat /etc/machine-id").stdout.strip() for i in (a, b)]
    assert all(len(i) == 32 for i in ids) and ids[0] != ids[1], ids
    served = []
    for instance in (a, b):
        keyscan = instances.client.host.exec(f"ssh-keyscan -T 10 -t ed25519 {instance.host.ip} 2>/dev/null").stdout
        own = instance.host.exec("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
        assert own in keyscan, f"{instance.host.name} serves {keyscan!r}, its key file holds {own}"
        served.append(own)
    assert served[0] != served[1], "both instances have the same SSH host key"


def test_admin_logs_in_on_each_instance(instances: Fleet) -> None:
    a, b = instances.a, instances.b
    # a: the password whose hash came in the user-data works, and the generated one no longer does.
    assert instances.client.login(a.host.ip, ADMIN, CHOSEN_PASSWORD).get("status") == 302
    assert instances.client.login(a.host.ip, ADMIN, a.secret("openemr-admin-password")).get("status") == 200
    # b: no hash given, the generated password in the root-only file.
    response = instances.client.login(b.host.ip, ADMIN, b.secret("openemr-admin-password"))
    assert response.get("status") == 302, response
    assert response["headers"].get("Location") == "/interface/main/main.php"


def test_first_boot_says_where_the_credentials_are_and_disables_itself(instances: Fleet) -> None:
    a, b = instances.a, instances.b
    motd_b = b.host.exec(f"cat {LAYOUT['motd_file']}").stdout
    assert f"https://{DOMAIN_B}/" in motd_b
    assert f"Log in as '{ADMIN}' with the password in {SECRETS_DIR}/openemr-admin-password" in motd_b
    assert b.secret("openemr-admin-password") not in motd_b
    motd_a = a.host.exec(f"cat {LAYOUT['motd_file']}").stdout
    assert f"https://{a.host.ip}/" in motd_a, motd_a  # its own address, not a Docker bridge's
    assert "whose hash was given" in motd_a and "/var/lib/cloud/instance/user-data.txt" in motd_a
    console = a.host.exec(f"journalctl -u {UNITS['firstboot']} -o cat --no-pager").stdout
    assert "OpenEMR is ready" in console and f"{SECRETS_DIR}/openemr-admin-password" not in console  # a's hash
    console_b = b.host.exec(f"journalctl -u {UNITS['firstboot']} -o cat --no-pager").stdout
    assert f"with the password in {SECRETS_DIR}/openemr-admin-password" in console_b
    assert b.secret("openemr-admin-password") not in console_b
    assert f"default_sni {DOMAIN_B}" in b.host.exec(f"cat {LAYOUT['compose_dir']}/caddy/Caddyfile").stdout
    for instance in (a, b):
        assert instance.host.exec(f"systemctl is-enabled {UNITS['firstboot']}.service").stdout.strip() == "disabled"


def test_a_bad_first_boot_setting_is_refused_and_nothing_starts(instances: Fleet) -> None:
    bad = instances.bad
    assert bad.state["firstboot"] == "failed"
    motd = bad.host.exec(f"cat {LAYOUT['motd_file']}").stdout
    assert "first boot refused" in motd and "'domain' = 'not a domain'" in motd, motd
    assert bad.host.exec("docker ps -aq | wc -l").stdout.strip() == "0"
    assert bad.host.exec(f"ls -A {SECRETS_DIR} 2>/dev/null | wc -l").stdout.strip() == "0"


def test_seal_refuses_a_host_that_was_not_baked(host_factory, tmp_path: Path) -> None:
    host = host_factory("debian13")
    before = host.exec("find /etc /var/lib -xdev -printf '%p %T@\\n' | sort").stdout
    run = run_shuttle("seal", *ssh_args(host, tmp_path), "--yes", "--json", tmp=tmp_path)
    assert run.returncode == 2, run.explain()
    assert "was not baked (no first-boot unit)" in run.failures, run.failures
    assert host.exec("find /etc /var/lib -xdev -printf '%p %T@\\n' | sort").stdout == before
    assert host.exec("test -s /etc/machine-id").returncode == 0


def test_seal_refuses_a_baked_host_whose_stack_has_run(clone, launched_snapshot, tmp_path: Path) -> None:
    """A copy of the launched host that also has the first-boot unit: baked, but its stack ran."""
    host = clone(launched_snapshot)
    host.exec(f"touch /etc/systemd/system/{UNITS['firstboot']}.service", check=True)
    run = run_shuttle("seal", *ssh_args(host, tmp_path), "--yes", "--json", tmp=tmp_path)
    assert run.returncode == 2, run.explain()
    assert "not a freshly baked host: its OpenEMR stack has run" in run.failures, run.failures
    assert host.exec(f"ls {SECRETS_DIR}/db-root-password").returncode == 0
    assert host.exec("test -s /etc/machine-id && ls /etc/ssh/ssh_host_ed25519_key").returncode == 0


def test_a_backup_target_given_at_first_boot_gets_its_own_passphrase_and_works(instances: Fleet) -> None:
    a, b = instances.a, instances.b
    assert b.host.exec(f"systemctl is-enabled {UNITS['backup']}.timer").stdout.strip() == "enabled"
    assert a.host.exec(f"systemctl is-enabled {UNITS['backup']}.timer").stdout.strip() == "disabled"
    assert "backup-passphrase" in b.host.exec(f"ls {SECRETS_DIR}").stdout
    assert f"Backups go to {REPO_B}" in b.host.exec(f"cat {LAYOUT['motd_file']}").stdout
    run = b.host.exec(f"{AGENT} backup run && {AGENT} backup list")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["backups"], run.stdout
