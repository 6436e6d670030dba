"""Run one playbook through ansible-runner, safely and visibly.

Why each choice:
- a fresh 0700 private data dir per run, removed afterwards: ansible-runner writes the extra vars
  (which hold secrets) and raw event artifacts there, and nothing of it should outlive the run;
- extra vars and the inventory (which carries each host's settings as the host variable `shuttle`)
  go through 0600 files, never argv, so `ps` shows no secret;
- events are reduced (events.py) before any reporter sees them;
- Ctrl-C asks ansible-runner to cancel, and the run exits 130.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import ansible_mitogen
import ansible_runner
import yaml

from shuttle import content
from shuttle.errors import BadInput
from shuttle.events import Event, translate
from shuttle.reporting import Reporter, RunLog
from shuttle.results import RunResult

#: Where the SSH multiplexing masters' sockets live: Ansible's default, made 0700 before a playbook runs.
CONTROL_DIR = Path("~/.ansible/cp")

#: Ansible settings for speed and predictable output. Mitogen's strategy keeps one Python
#: interpreter per host for the whole run and sends each module to it over that one SSH
#: connection, instead of starting Python on the host for every task; that halves a no-op launch
#: (README, Converge speed). Its strategy is found beside its package. Pipelining stays on for
#: the commands Mitogen leaves to Ansible (the listing, `raw`). The SSH connection is multiplexed
#: through a master that outlives the run by a minute, Mitogen's and Ansible's alike, in Ansible's
#: own directory for it (CONTROL_DIR): the next run reuses it, and a second `shuttle seal` still
#: reaches a host whose sshd can accept no new connection once its host keys are removed.
#: Host keys are accepted on first contact and checked afterwards. Mitogen makes its scratch
#: directories under the remote temporary directory at connection time; the system's /tmp, which
#: exists already, means a host that preflight refuses is left exactly as it was (no ~/.ansible).
ANSIBLE_ENV = {
    "ANSIBLE_STRATEGY": "mitogen_linear",
    "ANSIBLE_STRATEGY_PLUGINS": str(Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"),
    "ANSIBLE_REMOTE_TMP": "/tmp",
    "ANSIBLE_PIPELINING": "True",
    "ANSIBLE_SSH_ARGS": (
        f"-o ControlMaster=auto -o ControlPersist=60s -o ControlPath={CONTROL_DIR}/%C"
        " -o StrictHostKeyChecking=accept-new"
    ),
    "ANSIBLE_GATHERING": "explicit",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_NOCOLOR": "True",
    "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False",
    "ANSIBLE_DEPRECATION_WARNINGS": "False",
    "ANSIBLE_SYSTEM_WARNINGS": "False",
    "ANSIBLE_LOCALHOST_WARNING": "False",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
    # Every distribution Shuttle supports has it. Discovery would try each candidate interpreter over a
    # new SSH connection, and with a rejected key those failures trip sshd's per-source penalties.
    "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
    "ANSIBLE_TIMEOUT": "15",
    "ANSIBLE_FORCE_COLOR": "False",
}


@contextmanager
def private_dir() -> Iterator[Path]:
    """A fresh 0700 directory for one run's secrets and Ansible's scratch files, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="shuttle-run-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


class _Interrupt:
    """First Ctrl-C cancels the run gracefully; a second one exits at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _Interrupt:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


def ansible_env(private: Path, forks: int = 10) -> dict[str, str]:
    """The environment every Ansible command of a run gets (playbook, listing, inventory expansion)."""
    env = dict(ANSIBLE_ENV)
    env["ANSIBLE_ROLES_PATH"] = str(content.roles())
    env["ANSIBLE_LOCAL_TEMP"] = str(private / "tmp")
    env["ANSIBLE_FORKS"] = str(forks)
    # ansible-playbook is installed beside this interpreter, which need not be on PATH (a virtualenv).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return env


def count_tasks(playbook: Path, inventories: list[Path], extravars: Path, env: dict[str, str]) -> int | None:
    """Host-tasks the run will report, for the progress total: per play, its tasks times its hosts.

    One `ansible-playbook --list-hosts --list-tasks` call lists both, so the playbook is parsed once.
    """
    argv = [
        shutil.which("ansible-playbook", path=env["PATH"]) or "ansible-playbook",
        *(arg for path in inventories for arg in ("-i", str(path))),
        "-e", f"@{extravars}", "--list-hosts", "--list-tasks", str(playbook),
    ]  # fmt: skip
    try:
        listing = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=60, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    total, hosts = 0, 1
    for line in listing.splitlines():
        play_hosts = re.match(r"^\s+hosts \((\d+)\):", line)
        if play_hosts:
            hosts = int(play_hosts.group(1))
        elif line.startswith("      ") and "TAGS:" in line:
            total += hosts
    return total or None


def run(
    verb: str,
    *,
    extravars: dict[str, Any],
    inventory: dict[str, Any],
    inventory_files: Sequence[Path] = (),
    reporters: list[Reporter],
    check: bool = False,
    forks: int = 10,
    on_event: Callable[[Event], None] | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
) -> RunResult:
    """Run playbooks/<verb>.yml against `inventory` and return per-host results.

    Ansible reads `inventory_files` (the user's own) and then `inventory`, an inventory mapping written
    to a private 0600 file (it may hold secrets) whose host variables win over the files'.
    `settings` (per host, secrets redacted) is attached to each host's result for the summary.
    """
    playbook = content.playbook(verb)
    if not playbook.is_file():
        raise BadInput(f"{verb}: {playbook} is missing; this installation of Shuttle is incomplete")
    log = RunLog(verb)
    sinks: list[Reporter] = [log, *reporters]
    result = RunResult(verb=verb, log=str(log.path))
    with private_dir() as private, _Interrupt() as interrupt:
        extravars_file = _write_private(private / "env" / "extravars", json.dumps(extravars))
        generated = _write_private(private / "inventory" / "hosts.yml", yaml.safe_dump(inventory))
        inventories = [*inventory_files, generated]
        env = ansible_env(private, forks)
        # Neither Mitogen nor Ansible makes the directory of a ControlPath given in the SSH arguments.
        CONTROL_DIR.expanduser().mkdir(parents=True, exist_ok=True, mode=0o700)
        # The listing (a second ansible-playbook parsing the same playbook, seconds of work) runs while the
        # playbook itself starts; the reporters start, with the total, before the playbook's first event.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shuttle-listing")
        listing = pool.submit(count_tasks, playbook, inventories, extravars_file, env)
        pool.shutdown(wait=False)  # the listing runs on; its subprocess has a timeout of its own
        started = False

        def start() -> None:
            nonlocal started
            if not started:
                started = True
                total = listing.result()
                for sink in sinks:
                    sink.start(verb, total)

        def handle(raw: dict[str, Any]) -> bool:
            start()
            if raw.get("event") == "playbook_on_stats":
                stats = raw.get("event_data", {})
                for name in {h for key in ("ok", "dark", "failures", "skipped") for h in (stats.get(key) or {})}:
                    result.host(name).count(stats)
                _collect_messages(stats.get("artifact_data") or {}, result)
                return False
            event = translate(raw)
            if event is None:
                return False
            if event.event == "warning" and event.message:
                result.warnings.append(event.message)
            if event.host and event.status:
                result.host(event.host).record(event.status, event.message)
            for sink in sinks:
                sink.event(event)
            if on_event is not None:
                on_event(event)
            return False  # nothing is kept in the artifacts directory

        cmdline = "--check --diff" if check else None
        runner = ansible_runner.run(
            private_data_dir=str(private),
            playbook=str(playbook),
            inventory=[str(path) for path in inventories],
            envvars=env,
            cmdline=cmdline,
            event_handler=handle,
            cancel_callback=lambda: interrupt.requested,
            quiet=True,
        )
        start()
        result.interrupted = interrupt.requested or runner.status == "canceled"
        if runner.status in ("failed", "error") and not result.hosts:
            result.host("controller").record("failed", _startup_error(runner))
    for name, host in result.hosts.items():
        host.settings = (settings or {}).get(name)
    for sink in sinks:
        sink.finish(result)
    return result


def _collect_messages(data: dict[str, Any], result: RunResult) -> None:
    """Roles speak to the user through `set_stats` (aggregated lists `shuttle_notices`, `shuttle_warnings`,
    and the per-host mappings `shuttle_backups` and `shuttle_status`): the one channel that reaches the
    summary without any task's result being shown."""
    result.notices.extend(str(text) for text in data.get("shuttle_notices") or [])
    result.warnings.extend(str(text) for text in data.get("shuttle_warnings") or [])
    result.backups.update(data.get("shuttle_backups") or {})
    result.status.update(data.get("shuttle_status") or {})


def _startup_error(runner: Any) -> str:
    """Ansible failed before any host ran (bad inventory, syntax error): show its last lines."""
    try:
        text = runner.stdout.read()
    except (AttributeError, OSError, ValueError):
        text = ""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-5:]) or f"ansible-runner ended with status {runner.status}"
