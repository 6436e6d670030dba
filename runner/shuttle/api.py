"""Shuttle as a library: what the `shuttle` command does, for code that provisions many hosts.

The command line is a thin layer over these functions, so both behave the same. Each function:

- validates everything it is given (targets or inventory, the config, every host's own
  `shuttle_settings`) and raises `BadInput` (one line per problem) before any host is contacted;
- runs one playbook on all hosts, `forks` of them in parallel; a host that fails or cannot be
  reached does not stop the others;
- returns a `RunResult`: one `HostResult` per host, plus notices, warnings, backups and status
  reports; `RunResult.exit_code` is the command's exit code (0 done, 1 a host failed, 3 a host
  unreachable, 2 a host refused by preflight, 130 interrupted);
- prints nothing unless `reporters` are given; `on_event` receives every `Event` (task starts and
  per-host task results: names, statuses and failure messages only, never module data).

Hosts are either `targets` (`[USER@]HOST[:PORT]` strings reached over SSH; none means this host over
a local connection) or `inventory`, an Ansible inventory file whose hosts may carry a host variable
`shuttle_settings`: a mapping with the keys of shuttle.yml that overrides the config for that host.

    from shuttle import api

    def show(event: api.Event) -> None:
        if event.status in ("failed", "unreachable"):
            print(event.host, event.task, event.message)

    result = api.launch(inventory="customers.yml", config="shuttle.yml", forks=20, on_event=show)
    for host in result.hosts.values():
        print(host.host, host.status, host.settings["admin_user"] if host.settings else None)
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shuttle import config as config_module
from shuttle import content, driver
from shuttle import inventory as inventory_module
from shuttle import targets as targets_module
from shuttle.config import ShuttleConfig
from shuttle.errors import BadInput
from shuttle.events import Event
from shuttle.reporting import Reporter
from shuttle.results import HostResult, RunResult
from shuttle_host import rules

__all__ = [
    "BadInput",
    "ConfigSource",
    "Event",
    "EventCallback",
    "HostResult",
    "RunResult",
    "alerts_test",
    "backup",
    "bake",
    "drill",
    "launch",
    "restore",
    "seal",
    "status",
]

#: A config: a shuttle.yml path, a mapping of the same settings, a validated model, or None for defaults.
ConfigSource = Path | str | Mapping[str, Any] | ShuttleConfig | None
EventCallback = Callable[[Event], None]
Targets = Sequence[str] | str

MAX_FORKS = 200
#: `latest`, a Shuttle backup ID (its run's UTC time) or a restic snapshot ID.
_SNAPSHOT = re.compile(r"latest|[0-9]{8}T[0-9]{6}Z|[0-9a-f]{8,64}")

#: What `restore` replaces, as a user should read it before confirming.
RESTORED = (
    "the OpenEMR database, OpenEMR's sites/ volume (documents and site configuration), "
    f"{content.layout()['config_dir']} (config and secrets: the database and admin passwords become the backup's) "
    "and the proxy's TLS state"
)
#: What `seal` clears, as a user should read it before confirming.
SEALED = (
    "machine-id, SSH host keys, the authorized SSH keys (unless --keep-authorized-keys), logs, shell history,"
    " cloud-init state and Shuttle's per-instance state"
)


def launch(
    targets: Targets = (),
    *,
    inventory: Path | str | None = None,
    config: ConfigSource = None,
    empty: bool = False,
    check: bool = False,
    forks: int = 10,
    ssh_key: Path | str | None = None,
    known_hosts: Path | str | None = None,
    on_event: EventCallback | None = None,
    reporters: Sequence[Reporter] = (),
    confirm: Callable[[], None] | None = None,
) -> RunResult:
    """Install, harden and configure OpenEMR on the hosts (playbooks/launch.yml).

    `empty` installs without configuring OpenEMR (for a restore to follow); `check` shows what would
    change (check + diff) and changes nothing. Without targets or inventory the host is this machine.
    `confirm` is called once everything is validated, before any host is touched (the command line
    asks there before changing the local host); it raises BadInput to stop.
    """
    return _configured(
        "launch", targets, inventory, config, {"mode": "empty"} if empty else {},
        check=check, forks=forks, ssh_key=ssh_key, known_hosts=known_hosts, on_event=on_event, reporters=reporters,
        confirm=confirm,
    )  # fmt: skip


def bake(
    targets: Targets = (),
    *,
    inventory: Path | str | None = None,
    config: ConfigSource = None,
    forks: int = 10,
    ssh_key: Path | str | None = None,
    known_hosts: Path | str | None = None,
    on_event: EventCallback | None = None,
    reporters: Sequence[Reporter] = (),
    confirm: Callable[[], None] | None = None,
) -> RunResult:
    """Prepare hosts to be imaged (playbooks/bake.yml): like launch with `mode` forced to `bake`."""
    return _configured(
        "bake", targets, inventory, config, {"mode": "bake"},
        check=False, forks=forks, ssh_key=ssh_key, known_hosts=known_hosts, on_event=on_event, reporters=reporters,
        confirm=confirm,
    )  # fmt: skip


def seal(
    targets: Targets = (),
    *,
    inventory: Path | str | None = None,
    yes: bool = False,
    keep_authorized_keys: bool = False,
    forks: int = 10,
    ssh_key: Path | str | None = None,
    known_hosts: Path | str | None = None,
    on_event: EventCallback | None = None,
    reporters: Sequence[Reporter] = (),
) -> RunResult:
    """Clear per-instance state so the host can be imaged (playbooks/seal.yml); refused unless `yes`.

    The authorized SSH keys go too, unless `keep_authorized_keys`: the baker's keys must not open every
    instance; each gets its own from cloud-init or its provider."""
    hosts = _hosts(targets, inventory, ssh_key, known_hosts, forks)
    if not yes:
        raise BadInput(
            f"seal clears, on {_where(targets, inventory)}: {SEALED}, so the host is ready to be imaged; "
            "pass --yes to confirm"
        )
    extravars = {"shuttle_seal_keep_authorized_keys": keep_authorized_keys}
    return _run("seal", hosts, extravars, forks=forks, on_event=on_event, reporters=reporters)


def backup(
    targets: Targets = (),
    *,
    inventory: Path | str | None = None,
    list_backups: bool = False,
    forks: int = 10,
    ssh_key: Path | str | None = None,
    known_hosts: Path | str | None = None,
    on_event: EventCallback | None = None,
    reporters: Sequence[Reporter] = (),
) -> RunResult:
    """One backup now on each host, or with `list_backups` its backups and last run (RunResult.backups)."""
    hosts = _hosts(targets, inventory, ssh_key, known_hosts, forks)
    extravars = {"shuttle_backup_list": list_backups}
    return _run("backup", hosts, extravars, forks=forks, on_event=on_event, reporters=reporters)


def restore(
    targets: Targets = (),
    *,
    inventory: Path | str | None = None,
    snapshot: str = "latest",
    passphrase_file: Path | str | None = None,
    from_host: str | None = None,
    yes: bool = False,
    forks: int = 10,
    ssh_key: Path | str | None = None,
    known_hosts: Path | str | None = None,
    on_event: EventCallback | None = None,
    reporters: Sequence[Reporter] = (),
) -> RunResult:
    """Replace each host's data with a backup (`latest`, a backup ID or a snapshot ID); refused unless `yes`.

    `passphrase_file` holds the repository passphrase of another host's backups (recovery onto a new host);
    `from_host` restores that host's backups (its inventory name) instead of this host's own.
    """
    hosts = _hosts(targets, inventory, ssh_key, known_hosts, forks)
    if passphrase_file is not None and not Path(passphrase_file).is_file():
        raise BadInput(f"--passphrase-file {str(passphrase_file)!r}: is not a readable file")
    if not _SNAPSHOT.fullmatch(snapshot):
        raise BadInput(
            f"--snapshot {snapshot!r}: must be latest, a backup ID such as 20261121T023000Z, or a snapshot ID"
        )
    if from_host is not None:
        try:
            rules.host_id(from_host)
        except ValueError as problem:
            raise BadInput(f"--from-host {from_host!r}: {problem}") from None
    if not yes:
        raise BadInput(
            f"restore replaces, on {_where(targets, inventory)}: {RESTORED}, with backup {snapshot!r} "
            "(a safety backup of the current state is taken first); pass --yes to confirm"
        )
    extravars = {
        "backup_restore_run": snapshot,
        "backup_restore_from_host": from_host or "",
        "backup_passphrase_file": str(Path(passphrase_file).resolve()) if passphrase_file else "",
    }
    return _run("restore", hosts, extravars, forks=forks, on_event=on_event, reporters=reporters)


def drill(
    targets: Targets = (),
    *,
    inventory: Path | str | None = None,
    snapshot: str = "latest",
    forks: int = 10,
    ssh_key: Path | str | None = None,
    known_hosts: Path | str | None = None,
    on_event: EventCallback | None = None,
    reporters: Sequence[Reporter] = (),
) -> RunResult:
    """A restore drill on each host: the backup (`latest`, a backup ID or a snapshot ID) restored into a scratch
    project beside the live site, verified against its manifest, started and removed; the live site is not
    touched. The result is in RunResult.backups[host]["last_drill"] (and in `status`); a drill that could not
    verify everything fails, naming what."""
    hosts = _hosts(targets, inventory, ssh_key, known_hosts, forks)
    if not _SNAPSHOT.fullmatch(snapshot):
        raise BadInput(
            f"--snapshot {snapshot!r}: must be latest, a backup ID such as 20261121T023000Z, or a snapshot ID"
        )
    return _run("drill", hosts, {"backup_drill_run": snapshot}, forks=forks, on_event=on_event, reporters=reporters)


def alerts_test(
    targets: Targets = (),
    *,
    inventory: Path | str | None = None,
    forks: int = 10,
    ssh_key: Path | str | None = None,
    known_hosts: Path | str | None = None,
    on_event: EventCallback | None = None,
    reporters: Sequence[Reporter] = (),
) -> RunResult:
    """A test message through every alert channel each host was launched with, and one mail from OpenEMR
    through its relay (playbooks/alerts.yml). A channel that does not accept it fails the host (exit 1),
    naming the channel and its server's answer; RunResult.notices holds every channel's result."""
    hosts = _hosts(targets, inventory, ssh_key, known_hosts, forks)
    return _run("alerts", hosts, {}, forks=forks, on_event=on_event, reporters=reporters)


def status(
    targets: Targets = (),
    *,
    inventory: Path | str | None = None,
    check: bool = False,
    forks: int = 10,
    ssh_key: Path | str | None = None,
    known_hosts: Path | str | None = None,
    on_event: EventCallback | None = None,
    reporters: Sequence[Reporter] = (),
) -> RunResult:
    """Read each host's state (playbooks/status.yml; changes nothing) into RunResult.status[host]:
    `ready`, `services`, `admin_user`, `timezone`, `images`, `os`, `docker`, `compose`, `last_backup`,
    `last_check`, `last_restore`, `last_drill`, `restore_unfinished`, `alerts` (the active alerts).
    A host whose stack is not ready fails, naming the service."""
    hosts = _hosts(targets, inventory, ssh_key, known_hosts, forks)
    return _run("status", hosts, {}, check=check, forks=forks, on_event=on_event, reporters=reporters)


def _configured(
    verb: str,
    targets: Targets,
    inventory: Path | str | None,
    config: ConfigSource,
    overrides: dict[str, Any],
    *,
    check: bool,
    forks: int,
    ssh_key: Path | str | None,
    known_hosts: Path | str | None,
    on_event: EventCallback | None,
    reporters: Sequence[Reporter],
    confirm: Callable[[], None] | None,
) -> RunResult:
    """A verb that applies settings: the config, then the hosts, then each host's merged settings are
    validated; every host gets its own validated settings as the inventory variable `shuttle`."""
    data = _config_data(config)
    base = config_module.validate({**data, **overrides})
    hosts = _hosts(targets, inventory, ssh_key, known_hosts, forks)
    per_host = host_settings(hosts, data, base, overrides)
    if confirm is not None:
        confirm()
    extravars = {name: cfg.to_extravars() for name, cfg in per_host.items()}
    for name, cfg in per_host.items():
        key = recovery_key_file(name, cfg) if verb == "launch" else None
        extravars[name]["backup"]["recovery_key_file"] = str(key) if key and not check else None
        if key is not None and not check:
            make_recovery_key(key)
    return _run(
        verb, hosts, {},
        per_host_vars={name: {inventory_module.CONFIG_VAR: data} for name, data in extravars.items()},
        settings={name: cfg.model_dump(mode="json") for name, cfg in per_host.items()},
        check=check, forks=forks, on_event=on_event, reporters=reporters,
    )  # fmt: skip


RECOVERY_DIR = "shuttle-recovery"


def recovery_key_file(host: str, cfg: ShuttleConfig) -> Path | None:
    """Where the recovery key of `host` lives on the controller, or None when it has no backups (or is baked:
    each instance of an image gets its repository at its first boot)."""
    if not cfg.backup.target or cfg.mode == "bake":
        return None
    chosen = cfg.backup.recovery_key_file or Path(RECOVERY_DIR) / f"{host}.key"
    return chosen.expanduser().resolve()


def make_recovery_key(path: Path) -> bool:
    """Write a new recovery passphrase to `path` (0600, in a 0700 directory) unless the file exists; True when
    written. The launch then adds it to the repository as a key, so the file opens every backup of the host."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return True


def host_settings(
    hosts: inventory_module.Inventory, data: dict[str, Any], base: ShuttleConfig, overrides: dict[str, Any]
) -> dict[str, ShuttleConfig]:
    """Each host's settings: the config's `data`, its `shuttle_settings` on top, then `overrides`.

    Every host is checked before any runs, and every problem is reported (one line each, naming the host).
    """
    settings: dict[str, ShuttleConfig] = {}
    problems: list[str] = []
    for name in hosts.hosts:
        try:
            own = hosts.settings(name)
            if own is None:
                settings[name] = base
            else:
                merged = {**config_module.merge(data, own), **overrides}
                settings[name] = config_module.validate(merged, where=f"host {name!r}: ")
        except BadInput as problem:
            problems.append(str(problem))
    if problems:
        raise BadInput("\n".join(problems))
    return settings


def _config_data(config: ConfigSource) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, ShuttleConfig):
        return config.to_extravars()
    if isinstance(config, Mapping):
        return dict(config)
    return config_module.read(Path(config))


def _hosts(
    targets: Targets,
    inventory: Path | str | None,
    ssh_key: Path | str | None,
    known_hosts: Path | str | None,
    forks: int,
) -> inventory_module.Inventory:
    names = [targets] if isinstance(targets, str) else list(targets)
    if inventory is not None and names:
        raise BadInput("give either TARGETs or --inventory, not both")
    if not 1 <= forks <= MAX_FORKS:
        raise BadInput(f"--forks {forks}: must be between 1 and {MAX_FORKS}")
    if inventory is not None:
        path = targets_module.check_inventory_file(Path(inventory))
        with driver.private_dir() as private:
            return inventory_module.expand([path], driver.ansible_env(private, forks))
    mapping = targets_module.inventory_for(
        names,
        ssh_key=Path(ssh_key) if ssh_key is not None else None,
        known_hosts=Path(known_hosts) if known_hosts is not None else None,
    )
    return inventory_module.from_mapping(mapping)


def _where(targets: Targets, inventory: Path | str | None) -> str:
    names = [targets] if isinstance(targets, str) else list(targets)
    return ", ".join(names) or (str(inventory) if inventory is not None else "this host")


def _run(
    verb: str,
    hosts: inventory_module.Inventory,
    extravars: dict[str, Any],
    *,
    per_host_vars: dict[str, dict[str, Any]] | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
    check: bool = False,
    forks: int,
    on_event: EventCallback | None,
    reporters: Sequence[Reporter],
) -> RunResult:
    files, generated = hosts.sources(per_host_vars)
    return driver.run(
        verb, extravars=extravars, inventory=generated, inventory_files=files, reporters=list(reporters),
        check=check, forks=forks, on_event=on_event, settings=settings,
    )  # fmt: skip
