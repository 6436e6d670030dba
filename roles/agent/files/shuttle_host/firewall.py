"""The SSH rules of ufw, reconciled with the settings: what to remove, and whether removing it locks this run out.

The firewall role adds an `allow` rule per SSH source with the comment `shuttle ssh`; ufw only ever adds, so
narrowing `ssh.allowed_sources` or moving `ssh.port` would leave the old, wider rules in force. ufw keeps each
rule as a `### tuple ###` line in user.rules (IPv4) and user6.rules (IPv6):

    ### tuple ### allow tcp 22 0.0.0.0/0 any 203.0.113.0/24 in comment=73687574746c6520737368

(action, protocol, destination port, destination, source port, source, direction, the comment in hex). Rules
with this role's comment that the settings no longer ask for are the stale ones; rules anyone else added are
left alone. The role removes stale rules only after the wanted ones are in place, and only when the address
this run connects from stays inside the wanted sources (else the run would cut its own connection's way back).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

SSH_COMMENT = "shuttle ssh"
RULE_FILES = (Path("/etc/ufw/user.rules"), Path("/etc/ufw/user6.rules"))

_TUPLE = re.compile(
    r"### tuple ### allow tcp (?P<port>[0-9]+) (?P<dst>\S+) any (?P<src>\S+) in(?: comment=(?P<comment>[0-9a-f]*))?"
)


@dataclass(frozen=True, order=True)
class Rule:
    port: int
    #: The source as ufw writes it: a network, or a bare address for a /32 or /128.
    source: str

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.source, strict=False)


def ssh_rules(text: str) -> list[Rule]:
    """The rules with this role's SSH comment in ufw's rule files."""
    found = []
    for line in text.splitlines():
        match = _TUPLE.fullmatch(line.strip())
        if match and bytes.fromhex(match.group("comment") or "").decode(errors="replace") == SSH_COMMENT:
            found.append(Rule(int(match.group("port")), match.group("src")))
    return found


def stale(rules: list[Rule], port: int, sources: list[str]) -> list[Rule]:
    """The rules the settings (this SSH port, these source networks) no longer ask for."""
    wanted = {ipaddress.ip_network(source, strict=False) for source in sources}
    return sorted({rule for rule in rules if rule.port != port or rule.network() not in wanted})


def client_address(proc: Path = Path("/proc"), pid: int | str = "self") -> str | None:
    """The address the SSH connection of this run comes from: SSH_CONNECTION in the environment of the nearest
    process up the tree that has it (sudo, and a become user, clear it from their own); None for a local run."""
    current: int | str = pid
    while True:
        try:
            environ = (proc / str(current) / "environ").read_bytes().split(b"\0")
            stat = (proc / str(current) / "stat").read_text()
        except OSError:
            return None
        for item in environ:
            if item.startswith(b"SSH_CONNECTION="):
                return item.split(b"=", 1)[1].decode(errors="replace").split(" ")[0] or None
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent <= 1:
            return None
        current = parent


def inside(address: str, networks: list[str]) -> bool:
    """Whether the address is in one of the networks (entries that are not one, such as the DNS names fail2ban's
    ignoreip also takes, hold no address here)."""
    ip = ipaddress.ip_address(address)
    for network in networks:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


def plan(rules_text: str, port: int, sources: list[str], client: str | None) -> dict[str, object]:
    """What the role removes, and, when that would shut out this run's own address, the reason it refuses."""
    removed = stale(ssh_rules(rules_text), port, sources)
    refused = None
    if removed and client is not None and not inside(client, sources):
        refused = (
            f"ssh.allowed_sources does not include {client}, the address this run connects from: removing the"
            " rules it no longer lists would lock this run (and you) out; add that address or run from one inside"
        )
    return {
        "remove": [{"port": rule.port, "source": rule.source} for rule in removed],
        "client": client,
        "refused": refused,
    }


def read_rules(files: tuple[Path, ...] = RULE_FILES) -> str:
    return "\n".join(path.read_text() for path in files if path.is_file())
