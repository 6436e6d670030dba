"""Where a run goes: this host, `user@host[:port]` targets over SSH, or an inventory file.

Targets are turned into an Ansible inventory before anything runs, so a malformed target is a
bad-input error (exit 2) and never a half-started run.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shuttle.errors import BadInput

_TARGET = re.compile(
    r"^(?:(?P<user>[a-z_][a-z0-9_.-]{0,31})@)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d+))?$"
)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
LOCAL = "localhost"


@dataclass(frozen=True)
class Target:
    """One SSH destination named on the command line."""

    host: str
    user: str = "root"
    port: int = 22

    @property
    def name(self) -> str:
        """The inventory name: what events and summaries call this host."""
        # Not host:port: Ansible would read that as an address and two ports of one address would merge.
        return self.host if self.port == 22 else f"{self.host}-{self.port}"


def _valid_host(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if host.replace(".", "").isdigit():
        return False
    return len(host) <= 253 and all(_LABEL.match(label) for label in host.split("."))


def parse(text: str) -> Target:
    """Parse `user@host[:port]`; raise BadInput naming the target when it is not one."""
    match = _TARGET.match(text)
    if not match or not _valid_host(match.group("host")):
        raise BadInput(f"target {text!r}: expected [USER@]HOST[:PORT], e.g. root@emr.example.org:22")
    port = int(match.group("port") or 22)
    if not 1 <= port <= 65535:
        raise BadInput(f"target {text!r}: port {port} is outside 1-65535")
    return Target(host=match.group("host").strip("[]"), user=match.group("user") or "root", port=port)


def inventory_for(
    targets: list[str], *, ssh_key: Path | None = None, known_hosts: Path | None = None
) -> dict[str, Any]:
    """An Ansible inventory for the given targets; no targets means this host, over a local connection."""
    if ssh_key is not None and not ssh_key.is_file():
        raise BadInput(f"--ssh-key {str(ssh_key)!r}: no such file")
    if not targets:
        return {"all": {"hosts": {LOCAL: {"ansible_connection": "local", "ansible_python_interpreter": "auto_silent"}}}}
    hosts: dict[str, dict[str, Any]] = {}
    for text in targets:
        target = parse(text)
        if target.name in hosts:
            raise BadInput(f"target {text!r}: given twice")
        host_vars: dict[str, Any] = {
            "ansible_host": target.host,
            "ansible_user": target.user,
            "ansible_port": target.port,
        }
        if ssh_key is not None:
            host_vars["ansible_ssh_private_key_file"] = str(ssh_key.resolve())
        if known_hosts is not None:
            host_vars["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={known_hosts.resolve()}"
        hosts[target.name] = host_vars
    return {"all": {"hosts": hosts}}


def check_inventory_file(path: Path) -> Path:
    """Reject an inventory that cannot be read before Ansible gets it (Ansible would only warn)."""
    if not path.is_file():
        raise BadInput(f"inventory {str(path)!r}: no such file")
    if path.suffix in (".yml", ".yaml"):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            raise BadInput(f"inventory {str(path)!r}: not valid YAML") from None
        if not isinstance(data, dict) or not data:
            raise BadInput(f"inventory {str(path)!r}: expected a YAML inventory with groups and hosts")
    return path.resolve()
