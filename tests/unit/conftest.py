"""Helpers for the unit tier: the repository's own layout, role templates rendered as Ansible renders
them, and an agent settings directory under a test's tmp_path. Nothing here starts a host or a container."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from shuttle_host import settings as agent_settings

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"


def wiring_layout() -> dict[str, Any]:
    """The layout as the playbooks declare it (playbooks/group_vars/all/layout.yml)."""
    return yaml.safe_load((ROOT / "playbooks/group_vars/all/layout.yml").read_text())["shuttle_layout"]


def role_defaults(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROLES / role / "defaults/main.yml").read_text()) or {}


def render(role: str, template: str, variables: dict[str, Any]) -> str:
    """A role's template rendered by Ansible's own templar, with the role's defaults under `variables`."""
    templar = Templar(
        loader=DataLoader(), variables={"inventory_hostname": "clinic", **role_defaults(role), **variables}
    )
    return str(templar.template((ROLES / role / "templates" / template).read_text()))


def rebased(layout: dict[str, Any], root: Path) -> dict[str, Any]:
    """The layout with every absolute path moved under `root`, so the agent can write where it means to."""
    return {
        key: (str(root) + value if isinstance(value, str) and value.startswith("/") else value)
        for key, value in layout.items()
    }


def write_settings(directory: Path, layout: dict[str, Any], **sections: dict[str, Any]) -> agent_settings.Settings:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "layout.json").write_text(json.dumps(layout))
    for name, data in sections.items():
        (directory / f"{name}.json").write_text(json.dumps(data))
    return agent_settings.load(directory)


@pytest.fixture
def host_root(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    root.mkdir()
    return root


@pytest.fixture
def layout(host_root: Path) -> dict[str, Any]:
    return rebased(wiring_layout(), host_root)


@pytest.fixture
def stack_section(layout: dict[str, Any]) -> dict[str, Any]:
    """stack.json as the stack role writes it with its defaults."""
    return json.loads(render("stack", "settings.json.j2", {"stack_layout": layout}))


@pytest.fixture
def backup_section(layout: dict[str, Any]) -> dict[str, Any]:
    """backup.json as the backup role writes it with its defaults and a local repository."""
    target = layout["state_dir"] + "/repository"
    return json.loads(render("backup", "settings.json.j2", {"backup_layout": layout, "backup_target": target}))


@pytest.fixture
def host_settings(layout, stack_section, backup_section) -> agent_settings.Settings:
    directory = Path(layout["settings_dir"])
    firstboot = json.loads(render("firstboot", "settings.json.j2", {"firstboot_layout": layout}))
    return write_settings(directory, layout, stack=stack_section, backup=backup_section, firstboot=firstboot)
