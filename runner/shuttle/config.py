"""The typed configuration: what a user may set, with defaults, validated before any host is touched.

One YAML file (default `shuttle.yml`) plus `SHUTTLE_*` environment overrides (nested fields use a
double underscore: `SHUTTLE_TLS__MODE=acme`). Unknown keys are errors, so a typo never silently
falls back to a default. The JSON schema users see (`shuttle schema`) is generated from this model.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shuttle import content, releases
from shuttle.errors import BadInput
from shuttle_host import rules

# The rules every value follows live in the host agent's `rules` module, which an instance's first boot
# applies too: a value `shuttle launch` accepts is never refused on the host, and the other way round.
Hostname = Annotated[str, AfterValidator(rules.hostname)]
ImageRef = Annotated[str, AfterValidator(rules.image_ref)]
OpenemrImage = Annotated[ImageRef, AfterValidator(releases.runnable)]
Email = Annotated[str, AfterValidator(rules.email)]
SshPublicKey = Annotated[str, AfterValidator(rules.ssh_public_key)]
Network = Annotated[str, AfterValidator(rules.network)]
BackupTarget = Annotated[str, AfterValidator(rules.backup_target)]
OnCalendar = Annotated[str, AfterValidator(rules.on_calendar)]
ScheduleOrOff = Annotated[str, AfterValidator(rules.schedule_or_off)]
TimeZone = Annotated[str, AfterValidator(rules.timezone)]
AdminUser = Annotated[str, AfterValidator(rules.admin_user)]
HttpsUrl = Annotated[str, AfterValidator(rules.https_url)]
SmtpHost = Annotated[str, AfterValidator(rules.smtp_host)]
ChannelName = Annotated[str, AfterValidator(rules.channel_name)]
TimeSpan = Annotated[str, AfterValidator(rules.timespan)]


class Mode(StrEnum):
    full = "full"
    empty = "empty"
    bake = "bake"


class TlsMode(StrEnum):
    self_signed = "self-signed"
    acme = "acme"
    provided = "provided"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


class Acme(_Section):
    email: Email | None = Field(None, description="Contact address for the ACME account (expiry notices).")
    directory_url: HttpsUrl = Field(
        "https://acme-v02.api.letsencrypt.org/directory",
        description="ACME directory URL; point it at a staging or private CA to test.",
    )
    ca_root: Path | None = Field(
        None,
        description="PEM file on the controller: the root CA of a private ACME server's HTTPS certificate (Pebble).",
    )


class Tls(_Section):
    mode: TlsMode = Field(
        TlsMode.self_signed,
        description="self-signed (internal CA), acme (needs domain and acme.email), or provided (cert_path, key_path).",
    )
    cert_path: Path | None = Field(None, description="PEM certificate chain on the controller, for mode=provided.")
    key_path: Path | None = Field(None, description="PEM private key on the controller, for mode=provided.")


class DockerSource(StrEnum):
    distro = "distro"
    docker = "docker"


class Docker(_Section):
    source: DockerSource = Field(
        DockerSource.distro,
        description=(
            "distro: Debian/Ubuntu packages (reachable through mirrors and offline caches, security-patched by the"
            " distribution; Debian 12 gets Compose v1); docker: Docker's own apt repository (docker-ce, Compose v2)."
        ),
    )


class Images(_Section):
    openemr: OpenemrImage = Field(
        "openemr/openemr:7.0.3",
        description="OpenEMR application image, pinned; known-bad releases are refused (README: OpenEMR releases).",
    )
    mariadb: ImageRef = Field("mariadb:11.4", description="Database image, pinned (an LTS series).")
    proxy: ImageRef = Field("caddy:2.8.4", description="TLS reverse proxy image, pinned.")


class Ssh(_Section):
    port: int = Field(22, ge=1, le=65535, description="Port sshd listens on after hardening.")
    allowed_sources: list[Network] = Field(
        default_factory=lambda: ["0.0.0.0/0", "::/0"],
        min_length=1,
        description="Address ranges allowed to reach SSH through the firewall.",
    )
    admin_keys: list[SshPublicKey] = Field(
        default_factory=list, description="Public keys added to the connecting admin user's authorized_keys."
    )


class Retention(_Section):
    last: int = Field(5, ge=1, le=1000, description="The newest backups always kept, whatever their day.")
    daily: int = Field(7, ge=0, le=366)
    weekly: int = Field(4, ge=0, le=520)
    monthly: int = Field(6, ge=0, le=1200)
    safety: int = Field(3, ge=1, le=100, description="Safety backups (taken before each restore) kept.")


class Backup(_Section):
    target: BackupTarget | None = Field(
        None, description="Repository: /absolute/path, s3:https://HOST/BUCKET/PATH or sftp:USER@HOST:/PATH."
    )
    schedule: OnCalendar = Field("daily", description="systemd OnCalendar expression for scheduled backups.")
    retention: Retention = Field(default_factory=Retention)
    drill_schedule: ScheduleOrOff = Field(
        "monthly",
        description=(
            "When the restore drill runs (systemd OnCalendar), or off: the latest backup restored into a scratch "
            "project on the host, verified against its manifest, started and removed. `shuttle drill` runs one now."
        ),
    )
    s3_access_key_id: str | None = Field(None, description="S3 access key id, for s3: targets.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key; stored root-only on the host.")
    recovery_key_file: Path | None = Field(
        None,
        description=(
            "The recovery key's file on the controller (0600, made once by the launch; default "
            "shuttle-recovery/HOST.key in the working directory). It opens the repository and never stays on the "
            "host: keep it off-site. Hosts given one file share the key, and can share one repository."
        ),
    )


class EmailSecurity(StrEnum):
    starttls = "starttls"
    tls = "tls"


class WebhookSignature(StrEnum):
    header = "header"
    hmac = "hmac"


class CheckName(StrEnum):
    backup = "backup"
    backup_check = "backup-check"
    drill = "drill"
    certificate = "certificate"
    disk = "disk"
    services = "services"
    fail2ban = "fail2ban"
    firewall = "firewall"
    reboot = "reboot"


class EmailChannel(_Section):
    name: ChannelName | None = Field(
        None, description="How messages and `shuttle alerts test` name it (default email-N)."
    )
    host: SmtpHost = Field(description="The SMTP relay's host name or IP address.")
    port: int = Field(587, ge=1, le=65535, description="The relay's port: 587 for STARTTLS, 465 for implicit TLS.")
    security: EmailSecurity = Field(
        EmailSecurity.starttls, description="starttls or tls (implicit); the relay's certificate is always checked."
    )
    ca_file: Path | None = Field(
        None, description="PEM file on the controller: the CA the relay's certificate is from."
    )
    user: str | None = Field(None, min_length=1, max_length=255, description="Login at the relay, if it needs one.")
    password: SecretStr | None = Field(None, description="The relay password; stored root-only on the host.")
    sender: Email = Field(alias="from", description="The From address (the relay must allow it).")
    to: list[Email] = Field(min_length=1, description="Recipients: one or more addresses.")

    model_config = ConfigDict(extra="forbid", use_enum_values=True, populate_by_name=True)


class WebhookChannel(_Section):
    name: ChannelName | None = Field(
        None, description="How messages and `shuttle alerts test` name it (default webhook-N)."
    )
    url: str = Field(description="Where the JSON body is POSTed: https (http only with allow_private_http).")
    allow_private_http: bool = Field(
        False, description="Allow an http:// URL, only to an IP address on a private network (no TLS on the way)."
    )
    secret: SecretStr | None = Field(None, description="Shared secret; stored root-only on the host.")
    signature: WebhookSignature = Field(
        WebhookSignature.header,
        description=(
            "header: the secret is sent as X-Shuttle-Token; hmac: X-Shuttle-Signature: sha256=<HMAC of the body>."
        ),
    )
    ca_file: Path | None = Field(None, description="PEM file on the controller: the CA of the receiver's certificate.")

    @model_validator(mode="after")
    def _url_allowed(self) -> WebhookChannel:
        try:
            rules.webhook_url(self.url, allow_private_http=self.allow_private_http)
        except ValueError as problem:
            raise _FieldError("url", self.url, str(problem)) from None
        return self


class DiskThreshold(_Section):
    percent: float = Field(10, gt=0, le=100, description="Alert below this share of the filesystem free...")
    gib: float = Field(5, gt=0, description="...or below this many GiB free, whichever is smaller.")


class Alerts(_Section):
    email: list[EmailChannel] = Field(
        default_factory=list,
        description="E-mail channels (SMTP relays). OpenEMR's own mail goes through the first one's relay.",
    )
    webhooks: list[WebhookChannel] = Field(default_factory=list, description="Webhook channels.")
    interval: TimeSpan = Field("5min", description="How often the checks run (a systemd time span, 10s to 7d).")
    reminder: TimeSpan | None = Field(
        "1d", description="A persisting alert is told again this often (a time span), or never when null."
    )
    checks: list[CheckName] = Field(
        default_factory=lambda: [name.value for name in CheckName],
        description="The checks that run: " + ", ".join(name.value for name in CheckName) + ".",
    )
    disk_free: DiskThreshold = Field(default_factory=DiskThreshold)
    certificate_days: int = Field(14, ge=1, le=365, description="Alert when the served certificate expires sooner.")
    openemr_mail: bool = Field(True, description="OpenEMR sends its own mail through the first e-mail relay.")


class _FieldError(ValueError):
    """A cross-field problem, carrying the field the user should fix."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.field, self.value, self.message = field, value, message


class ShuttleConfig(BaseSettings):
    """Everything a launch needs to know. Every field has a safe default except where noted."""

    model_config = SettingsConfigDict(
        env_prefix="SHUTTLE_",
        env_nested_delimiter="__",
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )

    mode: Mode = Field(
        Mode.full, description="full (autoconfigure), empty (for a restore to follow), bake (start nothing)."
    )
    domain: Hostname | None = Field(None, description="Public DNS name of the host; needed for ACME.")
    acme: Acme = Field(default_factory=Acme)
    tls: Tls = Field(default_factory=Tls)
    images: Images = Field(default_factory=Images)
    docker: Docker = Field(default_factory=Docker)
    images_bundle: Path | None = Field(
        None, description="A `docker save` tarball on the controller, loaded instead of pulling images."
    )
    admin_user: AdminUser = Field("admin", description="OpenEMR administrator login name.")
    timezone: TimeZone = Field("UTC", description="Host and application time zone.")
    swap_size_mb: int = Field(2048, ge=0, le=65536, description="Swap file size when memory is small; 0 for none.")
    ssh: Ssh = Field(default_factory=Ssh)
    trusted_sources: list[Network] = Field(
        default_factory=list,
        description=(
            "Networks fail2ban never bans (an office, the machine Shuttle runs from, a monitoring host); a launch from"
            " an address outside them says so in its notices."
        ),
    )
    backup: Backup = Field(default_factory=Backup)
    alerts: Alerts = Field(default_factory=Alerts)

    @model_validator(mode="after")
    def _tls_needs(self) -> ShuttleConfig:
        if self.tls.mode == TlsMode.acme.value:
            if not self.domain:
                raise _FieldError("domain", None, "is required when tls.mode is acme")
            if not self.acme.email:
                raise _FieldError("acme.email", None, "is required when tls.mode is acme")
        if self.tls.mode == TlsMode.provided.value:
            for name in ("cert_path", "key_path"):
                path = getattr(self.tls, name)
                if path is None:
                    raise _FieldError(f"tls.{name}", None, "is required when tls.mode is provided")
                if not path.is_file():
                    raise _FieldError(f"tls.{name}", str(path), "is not a readable file")
        if self.acme.ca_root is not None and not self.acme.ca_root.is_file():
            raise _FieldError("acme.ca_root", str(self.acme.ca_root), "is not a readable file")
        if self.images_bundle is not None and not self.images_bundle.is_file():
            raise _FieldError("images_bundle", str(self.images_bundle), "is not a readable file")
        _refuse_a_target_inside_the_backup(self.backup.target)
        s3_keys = self.backup.s3_access_key_id and self.backup.s3_secret_access_key
        if self.backup.target and self.backup.target.startswith("s3:") and not s3_keys:
            raise _FieldError(
                "backup.s3_access_key_id", None, "and backup.s3_secret_access_key are required for an s3: target"
            )
        names: list[str] = []
        for kind, channels in (("email", self.alerts.email), ("webhooks", self.alerts.webhooks)):
            for index, channel in enumerate(channels):
                channel.name = channel.name or f"{'email' if kind == 'email' else 'webhook'}-{index + 1}"
                if channel.name in names:
                    raise _FieldError(f"alerts.{kind}.{index}.name", channel.name, "is the name of another channel")
                names.append(channel.name)
                if channel.ca_file is not None and not channel.ca_file.is_file():
                    raise _FieldError(f"alerts.{kind}.{index}.ca_file", str(channel.ca_file), "is not a readable file")
        for index, relay in enumerate(self.alerts.email):
            if relay.password is not None and not relay.user:
                raise _FieldError(f"alerts.email.{index}.user", None, "is required when a password is given")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file: an operator can override one value without editing it.
        return (env_settings, init_settings)

    def to_extravars(self) -> dict[str, Any]:
        """The config as Ansible sees it, secrets revealed: only ever written to a 0600 file."""
        data = self.model_dump(mode="json")
        secret = self.backup.s3_secret_access_key
        data["backup"]["s3_secret_access_key"] = secret.get_secret_value() if secret else None
        for kind, field in (("email", "password"), ("webhooks", "secret")):
            for index, channel in enumerate(getattr(self.alerts, kind)):
                value = getattr(channel, field)
                data["alerts"][kind][index][field] = value.get_secret_value() if value else None
        return data


#: Docker's data directory, where the volumes a backup takes live (the docker role keeps Docker's default).
DOCKER_DATA = "/var/lib/docker"


def _refuse_a_target_inside_the_backup(target: str | None) -> None:
    """A local repository inside what each backup takes (Docker's volumes, Shuttle's config, state or compose
    project) would back itself up and be lost with what it protects."""
    if not target or not target.startswith("/"):
        return
    layout = content.layout()
    path = PurePosixPath(target)
    for inside in (DOCKER_DATA, layout["config_dir"], layout["state_dir"], layout["compose_dir"]):
        if path == PurePosixPath(inside) or PurePosixPath(inside) in path.parents:
            raise _FieldError("backup.target", target, f"is inside {inside}, which the backups take or Shuttle keeps")


SECRET_FIELDS = {"backup.s3_secret_access_key"}
#: Secrets inside lists, by their field's last name (alerts.email.N.password, alerts.webhooks.N.secret).
SECRET_NAMES = {"password", "secret"}


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "config"
    ctx_error = error.get("ctx", {}).get("error")
    if isinstance(ctx_error, _FieldError):
        value = ctx_error.value
        field = ".".join([*(str(part) for part in error["loc"]), ctx_error.field])  # a nested section's own field
        message = ctx_error.message
    else:
        value = error.get("input")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            return f"config field {field!r} is not a known setting (see `shuttle schema`)"
        if error["type"] == "missing":
            return f"config field {field!r} is required"
    shown = "***" if field in SECRET_FIELDS or field.rsplit(".", 1)[-1] in SECRET_NAMES else repr(value)
    if value is None:
        return f"config field {field!r} {message}"
    return f"config field {field!r} = {shown}: {message}"


def read(path: Path) -> dict[str, Any]:
    """The settings a config file holds, unvalidated (they are merged with per-host settings first)."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise BadInput(f"config file {str(path)!r}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise BadInput(f"config file {str(path)!r}{where}: not valid YAML") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise BadInput(f"config file {str(path)!r}: must be a mapping of settings, not {type(loaded).__name__}")
    return loaded


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, section by section: a host that sets `ssh.port` keeps the base's
    `ssh.allowed_sources`. Lists and scalars are replaced whole."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate(data: dict[str, Any], *, where: str = "") -> ShuttleConfig:
    """Validate merged settings; each problem is one line, prefixed with `where` (e.g. the host's name)."""
    try:
        return ShuttleConfig(**data)
    except ValidationError as exc:
        raise BadInput("\n".join(where + _describe(e) for e in exc.errors())) from None


def load(path: Path | None, *, overrides: dict[str, Any] | None = None) -> ShuttleConfig:
    """Read, merge and validate the config. Raises BadInput with one line per problem."""
    data = read(path) if path is not None else {}
    return validate({**data, **(overrides or {})})


def schema() -> dict[str, Any]:
    return ShuttleConfig.model_json_schema()
