"""Which Compose drives the project: the settings' choice, else the v2 plugin when it answers, else v1."""

from __future__ import annotations

import subprocess

import pytest

from shuttle_host import docker, proc
from shuttle_host.errors import Failed


def fake_run(v2_answers: bool):
    def run(argv, **kwargs):
        code = 0 if v2_answers else 1
        return subprocess.CompletedProcess(argv, code, "2.26.1\n" if v2_answers else "", "")

    return run


@pytest.mark.parametrize(("flavor", "v2", "v1", "program"), [
    ("auto", True, True, ["docker", "compose"]),
    ("auto", False, True, ["docker-compose"]),
    ("v1", True, True, ["docker-compose"]),
    ("v2", False, False, ["docker", "compose"]),
])  # fmt: skip
def test_compose_is_chosen_by_setting_then_by_what_answers(host_settings, monkeypatch, flavor, v2, v1, program):
    monkeypatch.setattr(proc, "run", fake_run(v2))
    monkeypatch.setattr(docker.shutil, "which", lambda name: "/usr/bin/docker-compose" if v1 else None)
    found = docker.Docker(host_settings.layout, flavor)
    layout = host_settings.layout
    assert found.compose_argv == [*program, "-p", layout.project, "-f", str(layout.compose_file)]


def test_no_compose_at_all_is_a_clear_failure(host_settings, monkeypatch) -> None:
    monkeypatch.setattr(proc, "run", fake_run(False))
    monkeypatch.setattr(docker.shutil, "which", lambda name: None)
    with pytest.raises(Failed, match="Docker Compose is not installed"):
        _ = docker.Docker(host_settings.layout).compose_argv


def test_a_failed_command_says_what_and_why() -> None:
    with pytest.raises(Failed, match="list files: ls: cannot access '/nonexistent'"):
        proc.run(["ls", "/nonexistent"], what="list files")
    with pytest.raises(Failed, match="run it: no-such-program-here is not installed"):
        proc.run(["no-such-program-here"], what="run it")
