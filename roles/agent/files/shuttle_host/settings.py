"""The agent's settings: what the roles wrote into its settings directory, read and checked once.

Each concern's role writes its own file, so no role edits another's:

    layout.json     the agent role: every path and name of the host layout (the playbooks' one wiring file)
    stack.json      the stack role: Compose, the database, the admin user, readiness
    backup.json     the backup role: the repository, retention, what is backed up
    firstboot.json  the firstboot role (baked images only)
    alerts.json     the alerts role: the checks' thresholds and the channels (their secrets are in secrets_dir)

A unit or role always passes the directory (`--settings DIR`). A file that is missing, not JSON, or
lacks or adds a field is refused with one line naming the file and the field, before anything runs.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shuttle_host import rules
from shuttle_host.errors import Refused


@dataclass(frozen=True)
class Layout:
    """Paths and names on this host (see the playbooks' group_vars/all/layout.yml)."""

    project: str
    services: dict[str, str]
    volumes: dict[str, str]
    compose_dir: str
    config_dir: str
    secrets_dir: str
    settings_dir: str
    secrets: dict[str, str]
    agent_dir: str
    agent_command: str
    backup_lock: str
    state_dir: str
    backup_state_dir: str
    backup_record: str
    check_record: str
    backup_manifest: str
    drill_project: str
    drill_dir: str
    drill_request: str
    drill_record: str
    restore_request: str
    restore_journal: str
    restore_record: str
    restore_settings: str
    backup_cache_dir: str
    backup_known_hosts: str
    restore_passphrase: str
    recovery_key: str
    proxy_log_dir: str
    firstboot_dir: str
    firstboot_seed: str
    cloud_user_data: str
    firstboot_done: str
    motd_file: str
    alerts_dir: str
    alerts_state: str
    app_ca_file: str
    units: dict[str, str]

    def secret(self, key: str) -> Path:
        """The file of the secret the layout calls `key` (db_root, db, admin, backup_passphrase, ...)."""
        return Path(self.secrets_dir) / self.secrets[key]

    def volume(self, key: str) -> str:
        """The Docker volume Compose makes for the layout's volume `key`: <project>_<name>."""
        return f"{self.project}_{self.volumes[key]}"

    @property
    def compose_file(self) -> Path:
        return Path(self.compose_dir) / "docker-compose.yml"

    @property
    def env_file(self) -> Path:
        return Path(self.compose_dir) / ".env"


@dataclass(frozen=True)
class StackSettings:
    """How the compose project runs (written by the stack role)."""

    compose: str  # auto | v1 | v2
    #: full, empty (OpenEMR left unconfigured until a restore) or bake.
    mode: str
    db_name: str
    db_user: str
    admin_user: str
    #: .env variable -> the layout's secret key it holds.
    env_secrets: dict[str, str]
    max_restarts: int
    ready_timeout: int
    ready_interval: int
    log_tail: int
    #: The host's time zone from the config (OpenEMR's gbl_time_zone follows it: see site_globals).
    timezone: str
    domain: str
    acme_email: str
    https_port: int
    #: What reloads the proxy's configuration, run inside the proxy container.
    proxy_reload: list[str]
    #: The proxy's configuration file on the host (a first boot writes the variant it chooses there).
    proxy_caddyfile: str
    #: Where the proxy's internal CA keeps its root certificate, inside the proxy's data volume.
    proxy_ca_root: str
    acme_wait: int

    def __post_init__(self) -> None:
        if self.compose not in ("auto", "v1", "v2"):
            raise ValueError("compose must be auto, v1 or v2")
        if self.mode not in ("full", "empty", "bake"):
            raise ValueError("mode must be full, empty or bake")


RETENTION_KEYS = ("last", "daily", "weekly", "monthly", "safety")


@dataclass(frozen=True)
class BackupSettings:
    """The backup repository and what goes into it (written by the backup role)."""

    repository: str
    #: This host's identity in the repository (its inventory name): its runs are the ones it sees.
    host: str
    s3_access_key_id: str
    #: last (newest regular runs always kept), daily, weekly, monthly, safety (newest safety runs kept).
    retention: dict[str, int]
    check_read_percent: int
    #: The layout's volume keys whose content each backup saves.
    volumes: list[str]
    restore_timeout: int
    #: Free space a restore needs beyond the backup's own size, in percent of that size (the database
    #: is loaded beside the live one, and files are staged beside theirs).
    restore_space_margin: int
    #: How long opening the repository may take before it counts as unreachable (or, for S3, missing).
    probe_seconds: int

    def __post_init__(self) -> None:
        if set(self.retention) != set(RETENTION_KEYS):
            raise ValueError(f"retention needs exactly {', '.join(RETENTION_KEYS)}")
        rules.host_id(self.host)


@dataclass(frozen=True)
class FirstbootSettings:
    """A baked image's first boot (written by the firstboot role)."""

    ready_timeout: int


@dataclass(frozen=True)
class AlertsSettings:
    """What the alert checks judge and where their messages go (written by the alerts role).

    `channels` are JSON objects (see alerts.channels): e-mail relays and webhooks, without their secrets,
    which the role keeps root-only in the layout's `alerts` secret file, keyed by channel name.
    """

    #: This host's name in every message (its inventory name).
    host: str
    channels: list[dict[str, Any]]
    #: The checks that run (see checks.NAMES); the others are switched off.
    checks: list[str]
    #: How often an alert that persists is told again (a systemd time span such as 1d), or "": never.
    reminder: str
    disk_free_percent: float
    disk_free_gib: float
    certificate_days: int
    #: The backup timer's OnCalendar schedule (a backup older than twice its period is overdue), or "".
    backup_schedule: str
    #: self-signed, acme or provided: a self-signed certificate is short-lived and renewed in hours.
    tls_mode: str
    #: Whether OpenEMR sends its own mail through the first e-mail channel's relay.
    openemr_mail: bool

    def __post_init__(self) -> None:
        rules.host_id(self.host)
        if self.reminder:
            rules.timespan(self.reminder)
        if not 0 < self.disk_free_percent <= 100:
            raise ValueError("disk_free_percent must be above 0 and at most 100")


SECTIONS: dict[str, type] = {
    "layout": Layout,
    "stack": StackSettings,
    "backup": BackupSettings,
    "firstboot": FirstbootSettings,
    "alerts": AlertsSettings,
}


def _matches(value: Any, kind: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin is dict:
        key_type, value_type = typing.get_args(kind)
        return isinstance(value, dict) and all(
            _matches(k, key_type) and _matches(v, value_type) for k, v in value.items()
        )
    if origin is list:
        (item_type,) = typing.get_args(kind)
        return isinstance(value, list) and all(_matches(item, item_type) for item in value)
    if kind is Any:
        return True
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def parse(section: str, data: Any, source: str) -> Any:
    """`data` as the dataclass of `section`; Refused naming `source` and the field when it does not fit."""
    cls = SECTIONS[section]
    if not isinstance(data, dict):
        raise Refused(f"{source}: expected a JSON object of {section} settings")
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    missing = [name for name in names if name not in data]
    unknown = sorted(set(data) - set(names))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else []
        )
        raise Refused(f"{source}: {'; '.join(parts)}")
    for name in names:
        if not _matches(data[name], hints[name]):
            raise Refused(f"{source}: field {name!r} = {data[name]!r} is not a {hints[name]}")
    try:
        return cls(**data)
    except ValueError as problem:
        raise Refused(f"{source}: {problem}") from None


def read_section(section: str, path: Path) -> Any:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise Refused(f"{path} is missing") from None
    except (OSError, ValueError) as problem:
        raise Refused(f"{path}: cannot be read as JSON ({problem})") from None
    return parse(section, data, str(path))


@dataclass
class Settings:
    """The settings directory: the layout always, the other sections when their role has run."""

    directory: Path
    layout: Layout
    _loaded: dict[str, Any] = dataclasses.field(default_factory=dict)

    def _section(self, name: str, why: str) -> Any:
        if name not in self._loaded:
            path = self.directory / f"{name}.json"
            if not path.is_file():
                raise Refused(f"{why}: {path} is missing (run `shuttle launch` on this host)")
            self._loaded[name] = read_section(name, path)
        return self._loaded[name]

    @property
    def stack(self) -> StackSettings:
        return self._section("stack", "the stack is not set up")  # type: ignore[no-any-return]

    @property
    def backup(self) -> BackupSettings:
        return self._section("backup", "backups are not set up")  # type: ignore[no-any-return]

    @property
    def alerts(self) -> AlertsSettings:
        return self._section("alerts", "alerts are not set up")  # type: ignore[no-any-return]

    @property
    def firstboot(self) -> FirstbootSettings:
        return self._section("firstboot", "this host was not baked")  # type: ignore[no-any-return]

    def forget(self, name: str) -> None:
        """Read `name` again next time (its file was just rewritten)."""
        self._loaded.pop(name, None)

    def has(self, name: str) -> bool:
        return (self.directory / f"{name}.json").is_file()

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.json"


def load(directory: Path) -> Settings:
    return Settings(directory, read_section("layout", directory / "layout.json"))
