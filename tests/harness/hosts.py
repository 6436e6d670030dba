"""Disposable systemd test hosts: containers that boot like a fresh VM and are reached over SSH.

`--privileged` is refused on these machines (CAP_SYS_RESOURCE is not granted), so a host gets every
other capability plus the security options that let systemd, ufw, fail2ban and a nested Docker
engine work. Each host has its own volume at /var/lib/docker so nested overlay2 works.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness import images

NETWORK = "shuttle-test"
LABEL = "io.shuttle.testhost"
STATE_DIR = Path(os.environ.get("SHUTTLE_TEST_STATE", "/var/tmp/shuttle-test"))

#: The flags a systemd host needs here for systemd, ufw, fail2ban and a nested Docker engine to work.
RUN_FLAGS = (
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    # A test host must not set this machine's clock (a time daemon inside would).
    "--cap-drop=SYS_TIME",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    # /proc/sys writable, as on a VM: sysctl settings and Docker's IPv6 setup need it.
    "--security-opt=systempaths=unconfined",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--cgroupns=host",
    "--stop-signal=SIGRTMIN+3",
)


def _docker(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run docker; a failure raises with docker's own words, which CalledProcessError's message leaves out."""
    result = subprocess.run(["docker", *args], check=False, capture_output=True, text=True, input=input)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
    return result


_lock = threading.Lock()


def ssh_key(name: str = "id_ed25519", comment: str = "shuttle-test") -> Path:
    """The harness' own SSH key pair, generated once; tests log in to hosts with it."""
    key = STATE_DIR / name
    with _lock:
        if key.exists():
            return key
        STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True)
    return key


def admin_key() -> Path:
    """A second key pair: an admin's, given to launches as `ssh.admin_keys` (the harness key is root's own)."""
    return ssh_key("admin_ed25519", "shuttle-test-admin")


def ensure_network(name: str = NETWORK, *, internal: bool = False) -> str:
    with _lock:
        if _docker("network", "inspect", name, check=False).returncode != 0:
            _docker("network", "create", *(["--internal"] if internal else []), "--label", LABEL, name)
    return name


def gateway(network: str = NETWORK) -> str:
    info = json.loads(_docker("network", "inspect", network).stdout)[0]
    return info["IPAM"]["Config"][0]["Gateway"]


@dataclass
class TestHost:
    """One running test host."""

    name: str
    distro: str
    ssh_port: int
    ip: str
    key: Path
    #: A named Docker volume at /var/lib/docker to remove with the host ("" or a path: an anonymous one).
    volume: str = ""

    @property
    def target(self) -> str:
        """The `shuttle launch` target that reaches this host as users reach theirs."""
        return f"root@127.0.0.1:{self.ssh_port}"

    def exec(self, command: str, *, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside the host (out of band: not through the SSH path under test)."""
        return _docker("exec", "-i", self.name, "sh", "-c", command, check=check, input=input)

    def ssh_command(self, command: str) -> list[str]:
        return [
            "ssh",
            *ssh_options(self.key),
            "-p",
            str(self.ssh_port),
            "root@127.0.0.1",
            command,
        ]

    def refresh(self) -> None:
        """Read the address and SSH port again (a restarted container may get new ones)."""
        info = json.loads(_docker("inspect", self.name).stdout)[0]
        networks = info["NetworkSettings"]["Networks"]
        self.ip = next(iter(networks.values()))["IPAddress"]
        ports = info["NetworkSettings"]["Ports"].get("22/tcp") or []
        self.ssh_port = int(ports[0]["HostPort"]) if ports else 0

    def destroy(self) -> None:
        _docker("rm", "-f", "-v", self.name, check=False)
        if self.volume and not self.volume.startswith("/"):
            _docker("volume", "rm", "-f", self.volume, check=False)


def ssh_options(key: Path) -> list[str]:
    return [
        "-i",
        str(key),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
    ]


def _wait(host: TestHost, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = host.exec("systemctl is-system-running 2>/dev/null").stdout.strip()
        if state in ("running", "degraded"):
            probe = subprocess.run(host.ssh_command("true"), check=False, capture_output=True)
            if probe.returncode == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"test host {host.name} not ready after {timeout}s (systemd: {state or 'no answer'})")


def start(
    distro: str = "debian13",
    *,
    name: str | None = None,
    network: str = NETWORK,
    authorized_key: bool = True,
    publish: tuple[int, ...] = (),
    timeout: float = 90,
    snapshot: Snapshot | None = None,
) -> TestHost:
    """Start a fresh host of `distro` (or a copy of a snapshot), wait until systemd and sshd are up."""
    image = snapshot.image if snapshot else images.build(images.RECIPES[distro])
    ensure_network(network)
    name = name or f"shuttle-th-{distro}-{secrets.token_hex(3)}"
    volume = "/var/lib/docker"
    if snapshot is not None:
        volume = f"{name}-docker:/var/lib/docker"
        copy_volume(snapshot.volume, f"{name}-docker", image=snapshot.image)
    ports = [f"--publish=127.0.0.1::{p}" for p in (22, *publish)]
    _docker(
        "run", "--detach", "--name", name, "--hostname", name, "--label", LABEL,
        "--network", network, "--volume", volume, *RUN_FLAGS, *ports, image,
    )  # fmt: skip
    info = json.loads(_docker("inspect", name).stdout)[0]
    ssh_port = int(info["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
    ip = info["NetworkSettings"]["Networks"][network]["IPAddress"]
    key = ssh_key()
    host = TestHost(name=name, distro=distro, ssh_port=ssh_port, ip=ip, key=key, volume=volume.split(":")[0])
    setup = "install -d -m 0700 /root/.ssh"
    if authorized_key:
        # Added when missing, never overwritten: a copy of a launched host keeps the keys its launch added.
        public = key.with_suffix(".pub").read_text().strip()
        setup += (
            f" && touch /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"
            f" && (grep -qxF '{public}' /root/.ssh/authorized_keys || echo '{public}' >> /root/.ssh/authorized_keys)"
        )
    if images.apt_cache_reachable():
        proxy = f'Acquire::http::Proxy "http://{gateway(network)}:{images.APT_CACHE_PORT}";'
        setup += f" && echo '{proxy}' > /etc/apt/apt.conf.d/00shuttle-test-proxy"
    host.exec(setup, check=True)
    if not authorized_key:
        # Without a key the SSH probe cannot succeed; wait for systemd only.
        host.exec("systemctl is-system-running --wait >/dev/null 2>&1 || true")
        return host
    try:
        _wait(host, timeout)
    except TimeoutError:
        host.destroy()
        raise
    return host


@dataclass(frozen=True)
class Snapshot:
    """A host as it was at one moment: its container committed to an image and a copy of its Docker volume."""

    image: str
    volume: str
    distro: str

    def remove(self) -> None:
        _docker("image", "rm", "-f", self.image, check=False)
        _docker("volume", "rm", "-f", self.volume, check=False)


def docker_volume(host: TestHost) -> str:
    """The volume at the host's /var/lib/docker."""
    mounts = json.loads(_docker("inspect", host.name).stdout)[0]["Mounts"]
    return next(mount["Name"] for mount in mounts if mount["Destination"] == "/var/lib/docker")


def freeze(host: TestHost, attempts: int = 5) -> None:
    """`docker pause`, tried again when it fails: the cgroup freezer gives up ("unable to freeze") when a process
    forks or execs while it freezes, a race runc itself calls a game of chances, and a busy host loses it."""
    for attempt in range(1, attempts + 1):
        try:
            _docker("pause", host.name)
            return
        except RuntimeError:
            if attempt == attempts:
                raise
            time.sleep(2)


def snapshot(host: TestHost, name: str) -> Snapshot:
    """Save a running host as a VM snapshot would: frozen (`docker pause`) while its container is committed and its
    Docker volume copied, then thawed. A copy boots like the host after a power cut: from a consistent disk."""
    image = f"shuttle-test/snapshot:{name}"
    volume = f"shuttle-snapshot-{name}"
    _docker("volume", "rm", "-f", volume, check=False)
    freeze(host)
    try:
        _docker("commit", "--pause=false", host.name, image)
        copy_volume(docker_volume(host), volume, image=image)
    finally:
        _docker("unpause", host.name)
    return Snapshot(image, volume, host.distro)


def offline_network(name: str) -> str:
    """A network with no route anywhere: Docker's --internal cuts forwarding and NAT, and an INPUT rule on
    its bridge cuts this machine's own services (the apt cache, any proxy) from the hosts on it."""
    if _docker("network", "inspect", name, check=False).returncode != 0:
        _docker("network", "create", "--internal", "--label", LABEL,
                "--opt", f"com.docker.network.bridge.name={name}", name)  # fmt: skip
    rule = ["INPUT", "-i", name, "-j", "DROP"]
    if subprocess.run(["iptables", "-C", *rule], capture_output=True, check=False).returncode != 0:
        subprocess.run(["iptables", "-I", *rule], check=True)
    return name


def remove_offline_network(name: str) -> None:
    subprocess.run(["iptables", "-D", "INPUT", "-i", name, "-j", "DROP"], capture_output=True, check=False)
    _docker("network", "rm", name, check=False)


#: Directories that are root-only on a launched or baked host.
PRIVATE_DIRS = {"etc/shuttle", "etc/shuttle/secrets", "root"}


def boot(image: str, *, name: str, network: str, volume: str, files: dict[str, str] | None = None) -> TestHost:
    """Boot an instance of a saved image (a `docker commit` plus a copy of its /var/lib/docker volume), as a
    VM boots from its disk image: nothing is added to it but `files` (path -> content, written before the
    first boot, as cloud-init or a config drive would). It is reached out of band (`exec`), not over SSH."""
    _docker(
        "create", "--name", name, "--hostname", name, "--label", LABEL, "--network", network,
        "--volume", f"{volume}:/var/lib/docker", *RUN_FLAGS, image,
    )  # fmt: skip
    if files:
        with tempfile.TemporaryDirectory() as scratch:
            tree = Path(scratch)
            for path, content in files.items():
                local = tree / path.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(content)
                local.chmod(0o600)
            for directory in [d for d in tree.rglob("*") if d.is_dir()]:
                # The image's own modes for directories that already exist in it (tar would reset them).
                directory.chmod(0o700 if directory.relative_to(tree).as_posix() in PRIVATE_DIRS else 0o755)
            tree.chmod(0o755)
            _docker("cp", "--archive", f"{tree}/.", f"{name}:/")
    _docker("start", name)
    info = json.loads(_docker("inspect", name).stdout)[0]
    ip = info["NetworkSettings"]["Networks"][network]["IPAddress"]
    return TestHost(name=name, distro="instance", ssh_port=0, ip=ip, key=ssh_key())


def copy_volume(source: str, target: str, *, image: str) -> None:
    """Copy a Docker volume whole (overlay2's whiteouts and xattrs included), as cloning a disk would."""
    _docker("volume", "create", "--label", LABEL, target)
    _docker(
        "run", "--rm", "--network", "none", *RUN_FLAGS[:5], "--entrypoint", "cp",
        "--volume", f"{source}:/from:ro", "--volume", f"{target}:/to", image, "-a", "/from/.", "/to/",
    )  # fmt: skip


def port(host: TestHost, container_port: int) -> int:
    """The loopback port on this machine that forwards to `container_port` of `host`."""
    info = json.loads(_docker("inspect", host.name).stdout)[0]
    return int(info["NetworkSettings"]["Ports"][f"{container_port}/tcp"][0]["HostPort"])


def destroy_all() -> None:
    """Remove every test host this harness started, their volumes, snapshots and test networks."""
    ids = _docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
    if ids:
        _docker("rm", "-f", "-v", *ids, check=False)
    volumes = _docker("volume", "ls", "-q", "--filter", f"label={LABEL}").stdout.split()
    volumes += [v for v in _docker("volume", "ls", "-q").stdout.split() if v.startswith("shuttle-snapshot-")]
    if volumes:
        _docker("volume", "rm", "-f", *volumes, check=False)
    saved = _docker("image", "ls", "-q", "--filter", "reference=shuttle-test/*").stdout.split()
    if saved:
        _docker("image", "rm", "-f", *saved, check=False)
