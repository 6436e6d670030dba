"""The hosts of a run and each host's variables, read before anything runs.

A user's inventory (any format Ansible reads, with its group_vars/ and host_vars/) is expanded once
with `ansible-inventory --list`, so Shuttle sees every host's merged variables, in particular its
`shuttle_settings`, and can validate them before any host is contacted. The run then uses a
generated inventory (written to the run's private 0600 directory) with the same hosts, groups and
variables, plus each host's validated settings as the host variable `shuttle`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shuttle.errors import BadInput

#: The host variable that carries a host's own settings (same keys as shuttle.yml).
SETTINGS_VAR = "shuttle_settings"
#: The host variable the playbooks read the validated settings from.
CONFIG_VAR = "shuttle"
#: Groups every inventory has; Ansible creates them itself.
_IMPLICIT = {"all", "ungrouped"}


@dataclass
class Inventory:
    """Hosts with their merged variables, and the groups they are in."""

    hosts: dict[str, dict[str, Any]]
    #: group -> (member hosts, child groups), as `ansible-inventory --list` reports them.
    groups: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)

    def settings(self, host: str) -> dict[str, Any] | None:
        """The host's `shuttle_settings`, or None; BadInput when it is not a mapping."""
        value = self.hosts[host].get(SETTINGS_VAR)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise BadInput(
                f"host {host!r}: {SETTINGS_VAR} must be a mapping of settings (as in shuttle.yml), "
                f"not {type(value).__name__}"
            )
        return dict(value)

    def render(self, per_host: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """A YAML inventory mapping: every host with its variables (minus `shuttle_settings`) plus
        `per_host[host]` (e.g. `{"shuttle": ...}`), and every group with its members."""
        hosts: dict[str, Any] = {}
        for name, variables in self.hosts.items():
            kept = {key: value for key, value in variables.items() if key not in (SETTINGS_VAR, CONFIG_VAR)}
            hosts[name] = {**kept, **dict((per_host or {}).get(name, {}))}
        rendered: dict[str, Any] = {"all": {"hosts": hosts}}
        for group, (members, children) in self.groups.items():
            if group in _IMPLICIT:
                continue
            entry: dict[str, Any] = {}
            if members:
                entry["hosts"] = dict.fromkeys(members)
            if children:
                entry["children"] = dict.fromkeys(children)
            rendered[group] = entry
        return rendered


def from_mapping(data: Mapping[str, Any]) -> Inventory:
    """The inventory Shuttle built itself from TARGETs (`all.hosts` only)."""
    return Inventory(hosts={name: dict(variables or {}) for name, variables in data["all"]["hosts"].items()})


def expand(path: Path, env: Mapping[str, str]) -> Inventory:
    """Read the user's inventory the way ansible-playbook will, with `ansible-inventory --list`.

    `env` is the environment the run itself uses, so plugins and settings are the same. An inventory
    Ansible cannot parse is an error here (ansible-playbook would only warn and run on no host).
    """
    program = shutil.which("ansible-inventory", path=env.get("PATH")) or "ansible-inventory"
    argv = [program, "-i", str(path), "--list"]
    strict = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True"}
    run_env = {**os.environ, **env, **strict}
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=run_env, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BadInput(f"inventory {str(path)!r}: ansible-inventory could not run ({exc})") from None
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "ERROR" in line), lines[-1] if lines else "no output")
        raise BadInput(f"inventory {str(path)!r}: Ansible cannot read it: {reason.removeprefix('[ERROR]: ')}")
    try:
        listing = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise BadInput(f"inventory {str(path)!r}: ansible-inventory gave no readable listing") from None
    hostvars: dict[str, dict[str, Any]] = (listing.get("_meta") or {}).get("hostvars") or {}
    groups: dict[str, tuple[list[str], list[str]]] = {}
    names: list[str] = []
    for group, data in listing.items():
        if group == "_meta" or not isinstance(data, dict):
            continue
        members = list(data.get("hosts") or [])
        groups[group] = (members, list(data.get("children") or []))
        names.extend(name for name in members if name not in names)
    if not names:
        raise BadInput(f"inventory {str(path)!r}: has no hosts")
    return Inventory(hosts={name: dict(hostvars.get(name) or {}) for name in names}, groups=groups)
