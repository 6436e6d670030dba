"""The host tier's shared pieces: images built once, converged hosts saved as snapshots, and the CLI as users run it.

Three converges are paid once per session and everything else starts from them:

- `launched`: a fresh minimal Debian 13 host after a first `shuttle launch` (stand-in stack from the offline
  bundle, a non-UTC time zone, a sentinel S3 secret that is never contacted). Tests that only read a
  converged host, or run changes that leave it as it was (a second launch, `--check`), share it.
- `provisioned`: a fresh Debian 13 host launched with `mode: bake`: everything installed and the images
  loaded, no secret and nothing started. Tests that need their own admin user, an empty OpenEMR or a bake
  start from a copy of it.
- Copies (`clone`): a snapshot (`docker commit` plus a copy of the host's Docker volume, taken while the
  host is frozen) boots as a new host in seconds. A test that breaks a host gets a copy of its own.

Every test that boots a host or a container carries the `hosts` marker (`pytest -m "not hosts"` starts
none), and a test that skips fails the session unless SHUTTLE_TEST_ALLOW_SKIP=1 is set.
"""

from __future__ import annotations

import difflib
import json
import os
import secrets
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml
from moto.server import ThreadedMotoServer

from shuttle import content
from tests import sites, standins
from tests.harness import execlog, hosts, images, progress

LAYOUT = content.layout()
AGENT = LAYOUT["agent_command"]
SECRETS_DIR = LAYOUT["secrets_dir"]
#: The stack's generated secrets (file names), which must never leave the host.
STACK_SECRETS = tuple(LAYOUT["secrets"][key] for key in ("db_root", "db", "admin"))
#: Fixtures that boot hosts or containers: a test using one must carry the `hosts` marker.
#: Every fixture that boots hosts or containers depends on this one: a test using it must carry `hosts`.
HOST_FIXTURES = {"session"}
TIMEZONE = "America/Chicago"


# --- pytest wiring -------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--module-order", choices=("default", "reverse"), default="default",
        help="run the test modules in reverse order (to show that none depends on another having run first)",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    lock = threading.Lock()

    def to_terminal(line: str) -> None:
        capture = config.pluginmanager.getplugin("capturemanager")
        terminal = config.pluginmanager.getplugin("terminalreporter")
        with lock:
            if capture is not None and terminal is not None:
                with capture.global_and_fixture_disabled():
                    terminal.write_line(line)
            else:
                print(line, file=sys.stderr, flush=True)

    progress.sink = to_terminal


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = sorted(
        {item.nodeid.split("::")[0] for item in items if HOST_FIXTURES & set(getattr(item, "fixturenames", ()))
         and item.get_closest_marker("hosts") is None}
    )  # fmt: skip
    if unmarked:
        raise pytest.UsageError(f"these modules boot hosts but lack the `hosts` marker: {', '.join(unmarked)}")
    # The unit tier first (seconds, no host), then the other tests without hosts, then the host tier.
    items.sort(
        key=lambda item: (
            0 if item.nodeid.startswith("tests/unit/") else 1 if not item.get_closest_marker("hosts") else 2
        )
    )
    if config.getoption("--module-order") == "reverse":
        modules: list[str] = []
        for item in items:
            module = item.nodeid.split("::")[0]
            if module not in modules:
                modules.append(module)
        rank = {module: index for index, module in enumerate(reversed(modules))}
        items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    terminal = session.config.pluginmanager.getplugin("terminalreporter")
    skipped = terminal.stats.get("skipped", []) if terminal is not None else []
    if skipped and os.environ.get("SHUTTLE_TEST_ALLOW_SKIP") != "1":
        terminal.write_line(f"{len(skipped)} test(s) skipped: a missing tool fails the run (SHUTTLE_TEST_ALLOW_SKIP=1)")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- the CLI as users run it -------------------------------------------------------------------------------


@dataclass
class Run:
    """A finished `shuttle` invocation."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def summary(self) -> dict:
        return self.events[-1]

    @property
    def host(self) -> dict:
        """The summary of the run's only host."""
        (result,) = self.summary["hosts"].values()
        return result

    @property
    def failures(self) -> str:
        """Every failure message the run reported, one per line."""
        return "\n".join(str(e.get("message", "")) for e in self.events if e.get("status") in ("failed", "rejected"))

    @property
    def log(self) -> Path:
        """The run log the CLI names at its end (`log: PATH` in plain output, `log` in the JSON summary)."""
        try:
            return Path(self.summary["log"])
        except (ValueError, KeyError, IndexError):
            (line,) = [line for line in self.stdout.splitlines() if line.startswith("log: ")]
            return Path(line.removeprefix("log: "))

    def counts(self) -> dict[str, dict[str, int]]:
        """Per host, the ok/changed/failed/... counts the run log's summary lines record (any output mode)."""
        found = {}
        for line in self.log.read_text().splitlines():
            if " summary " in line:
                name, _, rest = line.split(" summary ", 1)[1].partition(": ")
                found[name] = {k: int(v) for k, v in (pair.split("=") for pair in rest.split()[1:])}
        return found

    def explain(self) -> str:
        """What an assertion shows when a run went wrong: exit code, failure messages, output tails."""
        try:
            failures = self.failures
        except ValueError:  # not JSON: the CLI itself failed before any event
            failures = ""
        return f"exit {self.returncode}\nfailures: {failures}\n{self.stdout[-6000:]}{self.stderr[-2000:]}"


def run_shuttle(*args: str, config: dict | None = None, tmp: Path, env: dict | None = None, timeout: int = 1800) -> Run:
    """Run the real CLI in a child process, as a user would (no stdin, no TTY)."""
    argv = [sys.executable, "-m", "shuttle", *args]
    if config is not None:
        path = tmp / "shuttle.yml"
        path.write_text(yaml.safe_dump(config))
        argv += ["--config", str(path)]
    proc = subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout,
        env={**os.environ, "SHUTTLE_LOG_DIR": str(tmp / "logs"), **(env or {})}, cwd=tmp, check=False,
    )  # fmt: skip
    return Run(proc.returncode, proc.stdout, proc.stderr)


def stack_config(**overrides: object) -> dict:
    """A config that runs the test stand-ins from the offline images bundle (no registry here)."""
    return {**standins.config(), **overrides}


def ssh_args(host: hosts.TestHost, tmp: Path) -> list[str]:
    """The options a user passes to reach a test host: its target, the harness key, a private known_hosts."""
    return [host.target, "--ssh-key", str(host.key), "--known-hosts", str(tmp / "known_hosts")]


def launch(host: hosts.TestHost, config: dict, *args: str, tmp: Path, timeout: int = 1800) -> Run:
    """`shuttle launch --json` against a test host, as a provider would run it."""
    return run_shuttle("launch", *ssh_args(host, tmp), "--json", *args, config=config, tmp=tmp, timeout=timeout)


def inventory(path: Path, hosts_: dict[str, hosts.TestHost], tmp: Path, **host_vars: object) -> Path:
    """An inventory file that reaches test hosts as a user's would, with role variables a site may tune."""
    entries = {
        name: {"ansible_host": "127.0.0.1", "ansible_port": host.ssh_port, "ansible_user": "root",
               "ansible_ssh_private_key_file": str(host.key),
               "ansible_ssh_common_args": f"-o UserKnownHostsFile={tmp / 'known_hosts'}", **host_vars}
        for name, host in hosts_.items()
    }  # fmt: skip
    path.write_text(yaml.safe_dump({"all": {"hosts": entries}}))
    return path


def host_vars_for_tests() -> dict:
    """Role variables the test hosts need, set as a site would, in the inventory:
    - the test hosts have far more memory than the swap threshold: raise it, so swap is made as on a small VM;
    - this machine runs every SSH command at the hosts from the network's gateway: fail2ban must not ban it."""
    return {"base_swap_memory_threshold_mb": 1_000_000, "fail2ban_ignoreip": [hosts.gateway(hosts.ensure_network())]}


def fingerprint(host: hosts.TestHost) -> str:
    """What a change to the host would alter: files (path, size, mode, mtime) and directories (path, mode) where
    Shuttle writes, containers and volumes. Left out: apt's package lists (refreshed on purpose, also in check
    mode), Docker's own data, fail2ban's database (fail2ban writes it as it watches the logs), and Ansible's
    scratch directory (which a run over SSH makes and removes)."""
    script = (
        "find /etc /opt /usr/local /var/lib /root -xdev "
        "\\( -path /var/lib/apt/lists -o -path /var/lib/docker -o -path /var/lib/fail2ban -o -path /root/.ansible"
        " \\) -prune -o "
        "\\( -type d -printf '%p dir %m\\n' \\) -o -printf '%p %s %m %T@\\n' | sort; "
        "docker ps -aq --no-trunc 2>/dev/null | sort; docker volume ls -q 2>/dev/null | sort"
    )
    done = host.exec(script)
    assert done.returncode == 0, done.stderr
    return done.stdout


def differences(before: str, after: str) -> str:
    """The lines two fingerprints do not share, for an assertion's message."""
    return "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))


def agent(host: hosts.TestHost, command: str) -> subprocess.CompletedProcess[str]:
    """The host agent, run on the host out of band."""
    return host.exec(f"{AGENT} {command}")


def wait_stack(host: hosts.TestHost, timeout: int = 600) -> None:
    """A copied host's stack comes back with its Docker engine: wait for it by the agent's own readiness rule."""
    done = agent(host, f"stack wait --timeout {timeout}")
    assert done.returncode == 0, f"the stack of {host.name} did not come back: {done.stdout[-2000:]}{done.stderr}"


# --- the session's jobs: images, roots, copies --------------------------------------------------------------


def _session(config: pytest.Config) -> sites.Session:
    """The one job session of this pytest run (made on first use, closed when pytest ends)."""
    existing = getattr(config, "_shuttle_session", None)
    if existing is None:
        factory = config._tmp_path_factory  # type: ignore[attr-defined]
        existing = sites.Session(tmp=factory.mktemp)
        config._shuttle_session = existing  # type: ignore[attr-defined]
        config.add_cleanup(existing.close)
    return existing


def _jobs_of(item: pytest.Item) -> set[str]:
    """The jobs a test needs: those its fixtures are named after, and those its module lists in PREFETCH (a
    fixture that picks its job by a parameter)."""
    names = set(getattr(item, "fixturenames", ())) | set(getattr(getattr(item, "module", None), "PREFETCH", ()))
    return names & set(sites.REGISTRY)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """Start every job the collected tests need, in the background, before the first test runs; then run the
    modules in their order, except that (in the default order) a module whose jobs are done goes before one
    that would wait for its own: the tests use the time the setups take."""
    if session.config.option.collectonly:
        return None
    ranks: dict[str, float] = {}
    for index, item in enumerate(session.items):
        for name in _jobs_of(item):
            ranks.setdefault(name, index)
    if not ranks:
        return None
    jobs = _session(session.config)
    jobs.prefetch(ranks)
    if session.config.getoption("--module-order") == "reverse":
        return None  # the strict order, as asked
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} errors during collection")
    modules: dict[str, list[pytest.Item]] = {}
    for item in session.items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    needs = {module: set().union(*(_jobs_of(item) for item in items)) for module, items in modules.items()}
    order = [modules.pop(jobs.first_ready(needs, list(modules)))]
    while order:
        items = order.pop()
        for index, item in enumerate(items):
            nextitem = items[index + 1] if index + 1 < len(items) else None
            if nextitem is None and modules:
                order.append(modules.pop(jobs.first_ready(needs, list(modules))))
                nextitem = order[-1][0]
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After a module's last test, remove the hosts of the jobs no test still to run needs: an idle host with
    its stack up costs CPU the other setups need, and a job may serve several modules (the fleet)."""
    yield
    done = item.config.stash.setdefault(_DONE, set())
    done.add(item.nodeid)
    jobs = getattr(item.config, "_shuttle_session", None)
    if jobs is None or (nextitem is not None and getattr(nextitem, "module", None) is getattr(item, "module", None)):
        return
    jobs.release_unneeded(set().union(*(_jobs_of(i) for i in item.session.items if i.nodeid not in done)))


_DONE = pytest.StashKey[set[str]]()


@pytest.fixture(scope="session")
def session(request: pytest.FixtureRequest) -> sites.Session:
    return _session(request.config)


@pytest.fixture(scope="session")
def host_factory(session: sites.Session, base_images: dict[str, str]) -> Callable[..., hosts.TestHost]:
    """Start plain hosts on demand; the session removes every host it started at its end."""
    return session.start_host


def boot_copy(session: sites.Session, snapshot: hosts.Snapshot, *, stack: bool = True) -> hosts.TestHost:
    """A new host booted from a copy of a snapshot, its stack (if it has one) waited for."""
    with progress.step("booting a copy of a saved host"):
        host = session.start_host(snapshot.distro, snapshot=snapshot)
        if stack:
            wait_stack(host)
    return host


def boot_copies(
    session: sites.Session, snapshot: hosts.Snapshot, names: Iterable[str], *, stack: bool = True
) -> dict[str, hosts.TestHost]:
    """Copies of a snapshot booted side by side (each mostly waits for systemd and its stack), by name."""
    names = list(names)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        copies = pool.map(lambda _: boot_copy(session, snapshot, stack=stack), names)
        return dict(zip(names, copies, strict=True))


@pytest.fixture(scope="session")
def clone(session: sites.Session) -> Callable[..., hosts.TestHost]:
    """`clone(snapshot)`: a new host booted from a copy of a snapshot."""
    return lambda snapshot, stack=True: boot_copy(session, snapshot, stack=stack)


@sites.job("base_images", weight=6)
def build_images(session: sites.Session) -> dict[str, str]:
    """The test host images and the stand-ins' images bundle, built side by side, once."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        bundle = pool.submit(standins.bundle)
        built = images.build_all()
        bundle.result()
    return built


@pytest.fixture(scope="session")
def base_images(session: sites.Session) -> dict[str, str]:
    return session.get("base_images")


@sites.job("s3", weight=0)
def start_s3(session: sites.Session) -> str:
    """A moto S3 server on this machine (on a port the kernel picks), reachable from the test hosts."""
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=0, verbose=False)
    server.start()
    session.resources["s3"] = server
    _, port = server.get_host_and_port()
    # The launched root's bucket exists, as a provider's would: restic retries a missing bucket until the probe
    # gives up, which would only slow the first launch down.
    requests.put(f"http://127.0.0.1:{port}/{S3_BUCKET}", timeout=30).raise_for_status()
    return f"http://{hosts.gateway(hosts.ensure_network())}:{port}"


@pytest.fixture(scope="session")
def s3(session: sites.Session) -> str:
    return session.get("s3")


@sites.job("recorder", weight=0)
def start_recorder(session: sites.Session) -> execlog.Recorder:
    recording = execlog.Recorder().start()
    session.resources["recorder"] = recording
    return recording


@pytest.fixture(scope="session")
def recorder(session: sites.Session) -> execlog.Recorder:
    return session.get("recorder")


SENTINEL = f"sentinel-{secrets.token_hex(6)}-do-not-leak"
S3_BUCKET = "clinic-backups"


def admin_public_key() -> str:
    return hosts.admin_key().with_suffix(".pub").read_text().strip()


def sentinel_config(s3_endpoint: str, recovery_key: Path) -> dict:
    """The launched root's settings: a non-UTC time zone, small swap, and backups to this session's S3 server
    with a sentinel secret key (the launch creates the repository there) and one recovery key file for the root
    and its copies (a copy launched from another directory would otherwise add a key of its own)."""
    return stack_config(
        timezone=TIMEZONE,
        swap_size_mb=512,
        ssh={"admin_keys": [admin_public_key()]},
        backup={"target": f"s3:{s3_endpoint}/{S3_BUCKET}/clinic",
                "s3_access_key_id": f"AKIA{secrets.token_hex(8).upper()}", "s3_secret_access_key": SENTINEL,
                "recovery_key_file": str(recovery_key)},
    )  # fmt: skip


@dataclass
class Site:
    """A test host and how this session launches it: an inventory file and a config of its own."""

    host: hosts.TestHost
    tmp: Path
    inventory: Path
    config: dict

    def launch(self, *args: str, config: dict | None = None, env: dict | None = None) -> Run:
        """`shuttle launch -i INVENTORY` (plain output unless `--json` is among `args`)."""
        return run_shuttle(
            "launch", "-i", str(self.inventory), *args, config=config or self.config, tmp=self.tmp, env=env
        )


def site(host: hosts.TestHost, tmp: Path, config: dict) -> Site:
    return Site(host, tmp, inventory(tmp / "inventory.yml", {host.name: host}, tmp, **host_vars_for_tests()), config)


@dataclass
class Launched(Site):
    """A fresh minimal host after a `--check` run and a first `shuttle launch -i ... --json`."""

    run: Run = field(default_factory=lambda: Run(0, "", ""))
    check_run: Run = field(default_factory=lambda: Run(0, "", ""))
    before_check: str = ""
    after_check: str = ""
    packages_before: str = ""
    commands: list[str] = field(default_factory=list)
    snapshot: hosts.Snapshot | None = None


def launch_fresh(session: sites.Session, distro: str, config: dict, *, check_config: dict | None = None) -> Launched:
    """A fresh minimal host of `distro`: `launch --check` (with `check_config`, else `config`), then the launch."""
    host = session.start_host(distro)
    tmp = session.tmp(f"fresh-{distro}")
    base = site(host, tmp, config)
    packages = host.exec("dpkg-query -W -f '${Package}\\n'").stdout
    before = fingerprint(host)
    with progress.step(f"check mode on the fresh {distro} host"):
        check = base.launch("--check", "--json", config=check_config or config)
    after = fingerprint(host)
    recording = session.get("recorder")
    mark = recording.mark()
    with progress.step(f"first launch of the fresh {distro} host"):
        run = base.launch("--json")
    commands = recording.since(mark)
    assert run.returncode == 0, run.explain()
    return Launched(host, tmp, base.inventory, config, run, check, before, after, packages, commands)


@sites.job("launched", needs=("base_images", "s3", "recorder"), weight=6)
def build_launched(session: sites.Session) -> Launched:
    """The Debian 13 root: launched once, saved right away (before any test touches it) for copies."""
    launched = launch_fresh(
        session, "debian13", sentinel_config(session.get("s3"), session.tmp("recovery") / "launched.key")
    )
    launched.snapshot = session.snapshot(launched.host, f"launched-{os.getpid()}")
    return launched


@pytest.fixture(scope="session")
def launched(session: sites.Session) -> Launched:
    """Shared by every test that only reads a converged host or converges it again to the same state."""
    return session.get("launched")


@pytest.fixture(scope="session")
def launched_snapshot(launched: Launched) -> hosts.Snapshot:
    assert launched.snapshot is not None
    return launched.snapshot


@sites.job("provisioned", needs=("base_images", "recorder"), weight=5)
def build_provisioned(session: sites.Session) -> Launched:
    """The Debian 12 root: `--check` of a full launch on a fresh host, then a launch in bake mode (everything
    installed, images loaded, no secret, nothing started), saved for copies and removed."""
    small_swap = {"swap_size_mb": 512}  # the swap file is made once: copies launched later keep this one
    provisioned = launch_fresh(
        session, "debian12", stack_config(mode="bake", **small_swap), check_config=stack_config(**small_swap)
    )
    provisioned.snapshot = session.snapshot(provisioned.host, f"provisioned-{os.getpid()}")
    provisioned.host.destroy()
    return provisioned


@pytest.fixture(scope="session")
def provisioned(session: sites.Session) -> hosts.Snapshot:
    root = session.get("provisioned")
    return root.snapshot


@pytest.fixture(scope="session")
def provisioned_root(session: sites.Session, provisioned: hosts.Snapshot) -> Launched:
    """The provisioned root's runs: its check mode on the fresh Debian 12 host, its bake-mode launch."""
    return session.get("provisioned")


@dataclass
class Empty(Site):
    """A copy of the provisioned Debian 12 host launched with --empty, and its runs."""

    runs: list[Run] = field(default_factory=list)
    snapshot: hosts.Snapshot | None = None


@sites.job("empty", needs=("provisioned",), weight=2)
def build_empty(session: sites.Session) -> Empty:
    """Debian 12 with the whole launch in empty mode: OpenEMR unconfigured, for a restore. Shared by the checks
    that only read it (empty mode, Debian 12's hardening); saved for copies that reboot it."""
    host = boot_copy(session, session.get("provisioned").snapshot, stack=False)
    config = stack_config(
        mode="empty", timezone="Europe/Berlin", swap_size_mb=512, ssh={"admin_keys": [admin_public_key()]}
    )
    base = site(host, session.tmp("empty"), config)
    run = base.launch("--json")
    assert run.returncode == 0, run.explain()
    empty = Empty(base.host, base.tmp, base.inventory, base.config, [run])
    empty.snapshot = session.snapshot(host, f"empty-{os.getpid()}")
    return empty


@pytest.fixture(scope="session")
def empty(session: sites.Session) -> Empty:
    return session.get("empty")


def secret(host: hosts.TestHost, name: str) -> str:
    return host.exec(f"cat {shlex.quote(SECRETS_DIR + '/' + name)}", check=True).stdout.strip()
