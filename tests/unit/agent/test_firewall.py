"""Which of ufw's SSH rules the settings no longer ask for, and the guard that keeps a run from locking itself out
(ufw's rule files in the shape ufw 0.36 writes them; the removal itself runs on hosts in tests/test_hardening.py)."""

from __future__ import annotations

from pathlib import Path

from shuttle_host import firewall

SSH = b"shuttle ssh".hex()
PUBLIC = b"shuttle public".hex()

USER_RULES = f"""*filter
### RULES ###

### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment={SSH}
-A ufw-user-input -p tcp --dport 22 -j ACCEPT

### tuple ### allow tcp 22 0.0.0.0/0 any 203.0.113.0/24 in comment={SSH}
### tuple ### allow tcp 22 0.0.0.0/0 any 198.51.100.7 in comment={SSH}
### tuple ### allow tcp 443 0.0.0.0/0 any 0.0.0.0/0 in comment={PUBLIC}
### tuple ### allow tcp 2222 0.0.0.0/0 any 192.0.2.0/24 in
### END RULES ###
### tuple ### allow tcp 22 ::/0 any ::/0 in comment={SSH}
"""


def test_only_this_roles_ssh_rules_are_read() -> None:
    rules = firewall.ssh_rules(USER_RULES)
    assert rules == [
        firewall.Rule(22, "0.0.0.0/0"),
        firewall.Rule(22, "203.0.113.0/24"),
        firewall.Rule(22, "198.51.100.7"),
        firewall.Rule(22, "::/0"),
    ]


def test_narrowed_sources_leave_the_wider_rules_stale() -> None:
    rules = firewall.ssh_rules(USER_RULES)
    # ufw writes a single address without /32; the settings carry it with one.
    stale = firewall.stale(rules, 22, ["203.0.113.0/24", "198.51.100.7/32"])
    assert stale == [firewall.Rule(22, "0.0.0.0/0"), firewall.Rule(22, "::/0")]
    assert firewall.stale(rules, 22, ["0.0.0.0/0", "::/0", "203.0.113.0/24", "198.51.100.7/32"]) == []


def test_a_new_port_leaves_every_rule_of_the_old_one_stale() -> None:
    rules = firewall.ssh_rules(USER_RULES)
    assert firewall.stale(rules, 2222, ["0.0.0.0/0", "::/0"]) == sorted(rules)


def test_removing_is_refused_when_the_runs_own_address_would_be_shut_out() -> None:
    plan = firewall.plan(USER_RULES, 22, ["203.0.113.0/24"], client="192.0.2.10")
    assert plan["refused"] and "192.0.2.10" in str(plan["refused"]) and plan["remove"]
    allowed = firewall.plan(USER_RULES, 22, ["203.0.113.0/24"], client="203.0.113.9")
    assert allowed["refused"] is None and len(allowed["remove"]) == 3  # type: ignore[arg-type]
    # A local run has no connection to lose; nothing stale, nothing to guard.
    assert firewall.plan(USER_RULES, 22, ["203.0.113.0/24"], client=None)["refused"] is None
    unchanged = firewall.plan(USER_RULES, 22, ["0.0.0.0/0", "::/0", "203.0.113.0/24", "198.51.100.7"], "192.0.2.1")
    assert unchanged == {"remove": [], "client": "192.0.2.1", "refused": None}


def fake_process(proc: Path, pid: int, parent: int, environ: dict[str, str]) -> None:
    directory = proc / str(pid)
    directory.mkdir(parents=True)
    (directory / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in environ.items()) + b"\0")
    (directory / "stat").write_text(f"{pid} (python3 (x)) S {parent} {pid} {pid} 0 -1\n")


def test_the_client_address_comes_from_the_nearest_process_with_an_ssh_connection(tmp_path: Path) -> None:
    """sudo clears SSH_CONNECTION from what it starts: the address is found further up (the login's own shell)."""
    fake_process(tmp_path, 40, 1, {"PATH": "/bin"})
    fake_process(tmp_path, 41, 40, {"SSH_CONNECTION": "172.17.0.1 51234 172.17.0.5 22"})
    fake_process(tmp_path, 42, 41, {"SUDO_USER": "root"})
    fake_process(tmp_path, 43, 42, {"HOME": "/root"})
    assert firewall.client_address(tmp_path, 43) == "172.17.0.1"
    assert firewall.client_address(tmp_path, 40) is None  # a local run


def test_trusted_networks_may_be_bare_addresses_and_names_are_skipped() -> None:
    """fail2ban's ignoreip takes addresses, networks and DNS names; only the first two can hold an address."""
    trusted = ["172.18.0.1", "203.0.113.0/24", "monitor.example.org"]
    assert firewall.inside("172.18.0.1", trusted) and firewall.inside("203.0.113.77", trusted)
    assert not firewall.inside("198.51.100.1", trusted)
