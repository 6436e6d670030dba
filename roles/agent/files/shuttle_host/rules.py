"""The rules a setting's value must follow, written once for both sides that judge them.

`shuttle launch` (the pydantic config model on the controller) and an instance's first boot (the
per-instance settings on the host) call these same functions, so a value one side accepts the other
cannot refuse. Each takes a string and returns it (normalised where that is harmless) or raises
ValueError with the words a user reads after "config field 'X' = 'value': ".

Every pattern must match the whole value (`fullmatch`, and no class admits a line break), so a
trailing newline, which `re.match(...$)` would let through, is refused everywhere.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z)({_LABEL}\.)+[a-z]{{2,63}}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
_ADMIN_USER = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{2,31}")
#: PHP password_hash() output as OpenEMR checks it (AuthHash::hashValid): bcrypt under PHP's own `$2y$`
#: prefix, or Argon2. `$2a$`/`$2b$` (other bcrypt libraries) are refused: OpenEMR rejects them at login.
_PASSWORD_HASH = re.compile(
    r"\$2y\$[0-9]{2}\$[./A-Za-z0-9]{53}|\$argon2id?\$v=[0-9]+\$[a-z0-9=,]+\$[./A-Za-z0-9+]+\$[./A-Za-z0-9+]+"
)
#: Printable characters only: a path may hold spaces, never a control character or a line break.
_LOCAL_PATH = re.compile(r"/[^\x00-\x1f\x7f]*")
_S3 = re.compile(r"s3:https?://(?P<host>[A-Za-z0-9.-]+(:[0-9]{1,5})?)/(?P<bucket>[^/\s]+)(/[^\s]*)?")
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: The user and host may not start with "-": they end up in an ssh command line.
_SFTP = re.compile(r"sftp:[A-Za-z0-9_][A-Za-z0-9_.-]*@([A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):[^\s]*")
#: A host's identity in a backup repository (a restic tag and host name: no comma, no space).
_HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_ON_CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ -]{1,64}")
_IMAGE = re.compile(
    r"(?P<name>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?P<digest>@sha256:[a-f0-9]{64})?"
)
_SSH_KEY = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]+=*( [^\n\r]*)?"
)
_HTTPS_URL = re.compile(r"https://[^\s]+")
_CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
#: A systemd time span the alert timer takes: a number and a unit, at least ten seconds.
_TIMESPAN = re.compile(r"(?P<count>[0-9]{1,6}) ?(?P<unit>s|sec|m|min|h|d)")
_SPAN_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_WEB_URL = re.compile(r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?(/[^\s]*)?")

TARGET_FORMS = "an absolute path, s3:https://HOST/BUCKET[/PATH] or sftp:USER@HOST:/PATH"


def hostname(value: str) -> str:
    if not _HOSTNAME.fullmatch(value):
        raise ValueError("must be a fully qualified DNS name such as emr.example.org")
    return value


def email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("must be an email address such as it@clinic.example.org")
    return value


def admin_user(value: str) -> str:
    if not _ADMIN_USER.fullmatch(value):
        raise ValueError("must be 3-32 characters: a letter, then letters, digits, '.', '_' or '-'")
    return value


def password_hash(value: str) -> str:
    if not _PASSWORD_HASH.fullmatch(value):
        raise ValueError("must be a bcrypt ($2y$...) or Argon2 hash from PHP password_hash()")
    return value


def backup_target(value: str) -> str:
    """A restic repository Shuttle can reach: a local path, an S3 bucket, or an SFTP server."""
    if value.startswith("s3:"):
        match = _S3.fullmatch(value)
        if match is None:
            raise ValueError(f"must be {TARGET_FORMS}")
        if not _S3_BUCKET.fullmatch(match.group("bucket")):
            raise ValueError(
                "has an invalid S3 bucket name (3-63 characters: lowercase letters, digits, dots, hyphens)"
            )
        return value
    if value.startswith("sftp:"):
        if not _SFTP.fullmatch(value):
            raise ValueError(f"must be {TARGET_FORMS}")
        return value
    if not _LOCAL_PATH.fullmatch(value) or value.rstrip("/") == "":
        raise ValueError(f"must be {TARGET_FORMS}")
    if ".." in value.split("/"):
        raise ValueError("must be a path without '..' (the directory it names must be plain to see)")
    return value


def host_id(value: str) -> str:
    if not _HOST_ID.fullmatch(value):
        raise ValueError("must be a host name of letters, digits, '.', '_' and '-' (an inventory name)")
    return value


def timezone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError("must be an IANA time zone name such as UTC or America/New_York")
    return value


def on_calendar(value: str) -> str:
    if not _ON_CALENDAR.fullmatch(value):
        raise ValueError("must be a systemd OnCalendar expression such as daily or *-*-* 02:30:00")
    return value


def schedule_or_off(value: str) -> str:
    """A schedule that may be switched off (the restore drill's)."""
    if value == "off":
        return value
    try:
        return on_calendar(value)
    except ValueError:
        raise ValueError("must be off or a systemd OnCalendar expression such as monthly or *-*-01 04:00:00") from None


def image_ref(value: str) -> str:
    match = _IMAGE.fullmatch(value)
    if not match or (match.group("digest") is None and match.group("tag") in (None, "latest")):
        raise ValueError("must be an image reference pinned to a tag (not 'latest') or a digest, e.g. mariadb:11.4")
    return value


def ssh_public_key(value: str) -> str:
    stripped = value.strip()
    if not _SSH_KEY.fullmatch(stripped):
        raise ValueError("must be an OpenSSH public key line (ssh-ed25519, ssh-rsa or ecdsa)")
    return stripped


def network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError("must be an IP address or CIDR range such as 203.0.113.0/24") from None


def https_url(value: str) -> str:
    if not _HTTPS_URL.fullmatch(value):
        raise ValueError("must be an https:// URL")
    return value


def smtp_host(value: str) -> str:
    """An SMTP relay: a DNS name or an IP address (a relay on the LAN may have no name)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(value) and not re.fullmatch(_LABEL, value):
        raise ValueError("must be a host name such as smtp.example.org or an IP address")
    return value


def channel_name(value: str) -> str:
    if not _CHANNEL_NAME.fullmatch(value):
        raise ValueError("must be 1-32 characters: lowercase letters, digits and '-', starting with a letter or digit")
    return value


def timespan_seconds(value: str) -> int:
    """Seconds in a systemd time span such as 5min or 30s (at least 10 s, at most a week)."""
    match = _TIMESPAN.fullmatch(value)
    seconds = int(match["count"]) * _SPAN_SECONDS[match["unit"]] if match else 0
    if not 10 <= seconds <= 7 * 86400:
        raise ValueError("must be a time span from 10s to 7d, such as 30s, 5min, 12h or 1d")
    return seconds


def timespan(value: str) -> str:
    timespan_seconds(value)
    return value


def webhook_url(value: str, *, allow_private_http: bool) -> str:
    """An https URL; http only with `allow_private_http` and only to an IP address on a private network."""
    match = _WEB_URL.fullmatch(value)
    if match is None:
        raise ValueError("must be an https:// URL")
    if match["scheme"] == "https":
        return value
    try:
        private = ipaddress.ip_address(match["host"].strip("[]")).is_private
    except ValueError:
        private = False
    if not (allow_private_http and private):
        raise ValueError(
            "must be an https:// URL (http:// only to an IP address on a private network, with allow_private_http)"
        )
    return value
