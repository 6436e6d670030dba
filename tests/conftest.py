"""Shared fixtures: base images built once per session, disposable hosts, and a `shuttle` runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

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


def ssh_args(host: hosts.TestHost, tmp: Path) -> list[str]:
    """The options a user passes to reach a test host: its target, the harness key, a private known_hosts."""
    return [host.target, "--ssh-key", str(host.key), "--known-hosts", str(tmp / "known_hosts")]
