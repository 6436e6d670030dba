"""Shared fixtures: base images built once per session, disposable hosts, and a `shuttle` runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import standins
from tests.harness import hosts, images


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
        argv,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env={**os.environ, "SHUTTLE_LOG_DIR": str(tmp / "logs"), **(env or {})},
        cwd=tmp,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def base_images() -> dict[str, str]:
    return images.build_all()


@pytest.fixture(scope="session")
def host_factory(base_images: dict[str, str]) -> Iterator[Callable[..., hosts.TestHost]]:
    """Start hosts on demand; every host started in the session is removed at its end."""
    started: list[hosts.TestHost] = []

    def start(distro: str = "debian13", **kwargs: object) -> hosts.TestHost:
        host = hosts.start(distro, **kwargs)  # type: ignore[arg-type]
        started.append(host)
        return host

    yield start
    for host in started:
        host.destroy()


@pytest.fixture
def shuttle(tmp_path: Path) -> Callable[..., Run]:
    """`shuttle(*args, config=...)` runs the CLI with a private log dir and known_hosts under tmp_path."""

    def call(*args: str, config: dict | None = None, env: dict | None = None, timeout: int = 1800) -> Run:
        return run_shuttle(*args, config=config, tmp=tmp_path, env=env, timeout=timeout)

    return call


def stack_config(**overrides: object) -> dict:
    """A config that runs the test stand-ins from the offline images bundle (no registry here)."""
    return {**standins.config(), **overrides}


def launch(host: hosts.TestHost, config: dict, *args: str, tmp: Path, timeout: int = 1800) -> Run:
    """`shuttle launch --json` against a test host, as a provider would run it."""
    return run_shuttle("launch", *ssh_args(host, tmp), "--json", *args, config=config, tmp=tmp, timeout=timeout)


def ssh_args(host: hosts.TestHost, tmp: Path) -> list[str]:
    """The options a user passes to reach a test host: its target, the harness key, a private known_hosts."""
    return [host.target, "--ssh-key", str(host.key), "--known-hosts", str(tmp / "known_hosts")]


SENTINEL = "sentinel-5b1f0c-do-not-leak"
#: A config secret the sentinel tests look for; the s3 target is never contacted by launch.
SENTINEL_CONFIG = {
    "backup": {
        "target": "s3:https://s3.example.org/clinic-backups",
        "s3_access_key_id": "AKIASHUTTLETEST",
        "s3_secret_access_key": SENTINEL,
    }
}


def _watch_argv(stop: threading.Event, host: hosts.TestHost, seen: set[str]) -> None:
    """Record every process command line, on this machine and on the host, until told to stop."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    seen.add(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    continue
        remote = host.exec("for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done 2>/dev/null").stdout
        seen.update(remote.splitlines())
        time.sleep(0.05)


@dataclass
class Launched:
    """A Debian 13 host after a first `shuttle launch --json` with the stand-in stack and the sentinel secret."""

    host: hosts.TestHost
    tmp: Path
    run: Run
    argv_seen: set[str]


@pytest.fixture(scope="session")
def launched(host_factory, tmp_path_factory) -> Launched:
    """Shared by every test that only inspects or re-runs a converged host: one full converge per session."""
    host = host_factory("debian13")
    tmp = tmp_path_factory.mktemp("launched")
    seen: set[str] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_argv, args=(stop, host, seen), daemon=True)
    watcher.start()
    try:
        run = launch(host, stack_config(**SENTINEL_CONFIG), tmp=tmp)
    finally:
        stop.set()
        watcher.join()
    assert run.returncode == 0, run.explain()
    return Launched(host, tmp, run, seen)
