"""The hosts of a run and each host's variables, read before anything runs.

A user's inventory (any source Ansible reads, with its group_vars/ and host_vars/) is expanded once
with `ansible-inventory --list`, so Shuttle sees every host's merged variables, in particular its
`shuttle_settings`, and can validate them before any host is contacted. The run then reads the user's
inventory unchanged (vaulted and `!unsafe` values stay as they are) followed by a generated one
(written to the run's private 0600 directory) that gives each host its validated settings as the host
variable `shuttle`; a later inventory source wins for a host's variables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shuttle.errors import BadInput

#: The host variable that carries a host's own settings (same keys as shuttle.yml).
SETTINGS_VAR = "shuttle_settings"
#: The host variable the playbooks read the validated settings from.
CONFIG_VAR = "shuttle"


@dataclass
class Inventory:
    """Hosts with their merged variables, and the user's inventory file they came from (None for TARGETs)."""

    hosts: dict[str, dict[str, Any]]
    path: Path | None = None

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

    def sources(self, per_host: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[list[Path], dict[str, Any]]:
        """What the run reads, in order: the user's inventory file (if any), then a generated inventory
        mapping with `per_host[host]` (e.g. `{"shuttle": ...}`) for each host. For TARGETs the generated
        inventory also holds the hosts' connection variables."""
        extra = {name: dict((per_host or {}).get(name, {})) for name in self.hosts}
        if self.path is not None:
            return [self.path], {"all": {"hosts": {name: vars_ for name, vars_ in extra.items() if vars_}}}
        return [], {"all": {"hosts": {name: {**self.hosts[name], **extra[name]} for name in self.hosts}}}


def from_mapping(data: Mapping[str, Any]) -> Inventory:
    """The inventory Shuttle built itself from TARGETs (`all.hosts` only)."""
    return Inventory(hosts={name: dict(variables or {}) for name, variables in data["all"]["hosts"].items()})


def expand(paths: list[Path], env: Mapping[str, str]) -> Inventory:
    """Read inventory sources the way ansible-playbook will, with `ansible-inventory --list`.

    `env` is the environment the run itself uses, so plugins and settings are the same. An inventory
    Ansible cannot parse is an error here (ansible-playbook would only warn and run on no host).
    """
    shown = str(paths[0]) if len(paths) == 1 else ", ".join(map(str, paths))
    program = shutil.which("ansible-inventory", path=env.get("PATH")) or "ansible-inventory"
    argv = [program, *(arg for path in paths for arg in ("-i", str(path))), "--list"]
    strict = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True"}
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, **env, **strict}, timeout=120, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BadInput(f"inventory {shown!r}: ansible-inventory could not run ({exc})") from None
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "ERROR" in line), lines[-1] if lines else "no output")
        raise BadInput(f"inventory {shown!r}: Ansible cannot read it: {reason.removeprefix('[ERROR]: ')}")
    try:
        listing = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise BadInput(f"inventory {shown!r}: ansible-inventory gave no readable listing") from None
    hostvars: dict[str, dict[str, Any]] = (listing.get("_meta") or {}).get("hostvars") or {}
    names: list[str] = []
    for group, data in listing.items():
        if group != "_meta" and isinstance(data, dict):
            names.extend(name for name in data.get("hosts") or [] if name not in names)
    if not names:
        raise BadInput(f"inventory {shown!r}: has no hosts")
    return Inventory(hosts={name: dict(hostvars.get(name) or {}) for name in names}, path=paths[0])
