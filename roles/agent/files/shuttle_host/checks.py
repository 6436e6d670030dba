"""The health checks behind alerts: what is wrong on this host now, each as a Finding.

Every check looks at what a user would notice, not at how it came about: the certificate is read from
what the HTTPS port serves (so a renewal broken for any reason is seen), free space from the
filesystems themselves, services from their containers. A check returns the findings it sees, or None
when it could not judge this time (a restore holds the host's lock and has stopped the app on purpose):
its alerts then stay as they were, neither raised nor resolved.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shuttle_host import files, proc, readiness
from shuttle_host.backup import exclusive
from shuttle_host.errors import Failed, Refused
from shuttle_host.settings import Settings
from shuttle_host.stack import Stack

#: Every check's name, as `alerts.checks` in shuttle.yml names them.
NAMES = ("backup", "backup-check", "drill", "certificate", "disk", "services", "fail2ban", "firewall", "reboot")
REBOOT_REQUIRED = Path("/run/reboot-required")
#: A restart count that grows by this much between two looks is a crash loop.
RESTART_LOOP = 2
#: Caddy's internal CA issues certificates for hours and renews them well before: alert only when one is
#: nearly gone.
SELF_SIGNED_MARGIN = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Finding:
    """One thing wrong: which check, about what (`subject`: a service, a filesystem...), and what to do."""

    check: str
    subject: str
    severity: str  # critical or warning
    message: str
    action: str

    @property
    def key(self) -> str:
        return f"{self.check}:{self.subject}"


@dataclass
class Context:
    """What the checks read: the host's settings, the clock, and what the last look remembered."""

    settings: Settings
    now: dt.datetime
    memory: dict[str, Any]


def _record(path: str) -> dict[str, Any] | None:
    data = files.read_json(Path(path))
    return data if isinstance(data, dict) else None


def _parse_time(value: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def schedule_period(schedule: str) -> dt.timedelta:
    """How far apart two runs of an OnCalendar schedule are, as systemd computes them (a day if it cannot)."""
    done = proc.run(["systemd-analyze", "calendar", "--iterations=2", schedule], what="read the backup schedule",
                    check=False, timeout=30)  # fmt: skip
    moments = []
    for line in done.stdout.splitlines():
        if "(in UTC):" in line:
            text = line.split("(in UTC):", 1)[1].strip()
            try:
                moments.append(dt.datetime.strptime(text, "%a %Y-%m-%d %H:%M:%S %Z"))
            except ValueError:
                continue
    if len(moments) >= 2 and moments[1] > moments[0]:
        return moments[1] - moments[0]
    return dt.timedelta(days=1)


def backup(ctx: Context) -> list[Finding] | None:
    conf = ctx.settings
    if not conf.has("backup") or not conf.backup.repository:
        return []
    last = _record(conf.layout.backup_record)
    unit = conf.layout.units["backup"]
    if last is None or last.get("result") == "running":
        return []
    if last.get("result") == "failed":
        return [Finding("backup", "last run", "critical", f"the last backup failed: {last.get('message')}",
                        f"see `journalctl -u {unit}`; fix the target, then run `shuttle backup`")]  # fmt: skip
    finished = _parse_time(str(last.get("finished") or last.get("started") or ""))
    schedule = conf.alerts.backup_schedule
    if finished is None or not schedule:
        return []
    allowed = 2 * schedule_period(schedule) + dt.timedelta(hours=1)  # the timer's randomized delay
    if ctx.now - finished > allowed:
        age = ctx.now - finished
        return [Finding("backup", "overdue", "critical",
                        f"the last good backup finished {age.days} days {age.seconds // 3600} hours ago "
                        f"(scheduled {schedule})",
                        f"check `systemctl status {unit}.timer` and `journalctl -u {unit}`")]  # fmt: skip
    return []


def _failed_record(check: str, path: str, unit: str, what: str) -> list[Finding]:
    last = _record(path)
    if last is None or last.get("result") != "failed":
        return []
    return [Finding(check, "last run", "critical", f"the last {what} failed: {last.get('message')}",
                    f"see `journalctl -u {unit}`")]  # fmt: skip


def backup_check(ctx: Context) -> list[Finding] | None:
    layout = ctx.settings.layout
    return _failed_record("backup-check", layout.check_record, layout.units["backup_check"], "repository check")


def drill(ctx: Context) -> list[Finding] | None:
    layout = ctx.settings.layout
    return _failed_record("drill", layout.drill_record, layout.units["drill"], "restore drill")


def served_certificate(port: int, server_name: str | None, address: str = "127.0.0.1") -> bytes:
    """The DER certificate the HTTPS port serves (not verified: a broken one is what is looked for)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address, port), timeout=15) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError("no certificate was served")
    return der


def not_after(der: bytes) -> dt.datetime:
    """A certificate's expiry, read by openssl (the standard library parses only verified certificates)."""
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = proc.output(["openssl", "x509", "-noout", "-enddate"], what="read the served certificate", input=pem,
                      timeout=30)  # fmt: skip
    text = out.strip().removeprefix("notAfter=")
    return dt.datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.timezone.utc)


def certificate(ctx: Context) -> list[Finding] | None:
    conf = ctx.settings
    if not conf.has("stack") or conf.stack.mode == "bake":
        return []
    port, name = conf.stack.https_port, conf.stack.domain or None
    try:
        expires = not_after(served_certificate(port, name))
    except (OSError, Failed, ValueError) as problem:
        return [Finding("certificate", f"port {port}", "critical",
                        f"nothing serves a TLS certificate on port {port}: {problem}",
                        "check the proxy: `shuttle status`, `docker logs` of the proxy container")]  # fmt: skip
    margin = (
        SELF_SIGNED_MARGIN if conf.alerts.tls_mode == "self-signed" else dt.timedelta(days=conf.alerts.certificate_days)
    )
    left = expires - ctx.now
    if left > margin:
        return []
    when = f"expired {-left.days} days ago" if left.total_seconds() < 0 else f"expires in {left.days} days"
    action = {
        "provided": "install a renewed certificate (tls.cert_path, tls.key_path) and run `shuttle launch`",
        "acme": "renewal is failing: check DNS, ports 80/443 and the proxy's logs",
    }.get(conf.alerts.tls_mode, "the proxy is not renewing its certificate: check its logs")
    return [Finding("certificate", f"port {port}", "critical" if left.days < 3 else "warning",
                    f"the certificate served on port {port} {when} ({expires:%Y-%m-%d %H:%M} UTC)",
                    action)]  # fmt: skip


def _docker_root() -> str | None:
    done = proc.run(["docker", "info", "--format", "{{.DockerRootDir}}"], what="ask Docker for its data directory",
                    check=False, timeout=60)  # fmt: skip
    root = done.stdout.strip()
    return root if done.returncode == 0 and root.startswith("/") else None


def low_space(path: str, percent: float, gib: float, usage: Callable[[str], Any] = shutil.disk_usage) -> str | None:
    """Why `path`'s filesystem is short of space, or None: free below the smaller of `percent` % and `gib` GiB."""
    total, _used, free = usage(path)
    limit = min(total * percent / 100, gib * 2**30)
    if free >= limit:
        return None
    return f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB ({100 * free / total:.1f} %) on {path}"


def disk(ctx: Context) -> list[Finding] | None:
    conf = ctx.settings.alerts
    paths, seen = [], set()
    for path in ("/", _docker_root()):
        if path and os.path.isdir(path) and (device := os.stat(path).st_dev) not in seen:
            seen.add(device)
            paths.append(path)
    found = []
    for path in paths:
        why = low_space(path, conf.disk_free_percent, conf.disk_free_gib)
        if why:
            found.append(Finding("disk", path, "critical", f"free space is low: {why}",
                                 "free space (old images: `docker image prune`) or grow the disk"))  # fmt: skip
    return found


def _lock_is_free(lock: Path) -> bool:
    """Whether no backup, check or restore holds the host's lock (a restore stops the app on purpose)."""
    try:
        with exclusive(lock):
            return True
    except Refused:
        return False


def services(ctx: Context) -> list[Finding] | None:
    conf = ctx.settings
    if not conf.has("stack") or conf.stack.mode == "bake" or not conf.layout.compose_file.is_file():
        return []
    if not _lock_is_free(Path(conf.layout.backup_lock)):
        return None
    stack = Stack(conf)
    try:
        containers = stack.docker.containers()
    except Failed as problem:
        return [Finding("services", "docker", "critical", f"Docker does not answer: {problem}",
                        "check `systemctl status docker`")]  # fmt: skip
    before: dict[str, int] = ctx.memory.setdefault("restarts", {})
    found, now_counts = [], {}
    for name in conf.layout.services.values():
        service = readiness.from_inspect(name, containers.get(name))
        now_counts[service.container] = service.restarts
        grew = service.restarts - before.get(service.container, service.restarts)
        if service.state != "running" or service.health == "unhealthy":
            found.append(Finding("services", name, "critical", f"the {service.describe()}",
                                 "see `docker logs` of its container; `shuttle launch` starts it again"))  # fmt: skip
        elif grew >= RESTART_LOOP:
            found.append(Finding("services", name, "critical",
                                 f"service {name} restarted {grew} times since the last check",
                                 "see `docker logs` of its container"))  # fmt: skip
    ctx.memory["restarts"] = {key: value for key, value in now_counts.items() if key}
    return found


def _active(unit: str) -> bool:
    done = proc.run(["systemctl", "is-active", unit], what=f"ask systemd about {unit}", check=False, timeout=30)
    return done.stdout.strip() == "active"


def fail2ban(ctx: Context) -> list[Finding] | None:
    if _active("fail2ban"):
        return []
    return [Finding("fail2ban", "fail2ban", "critical", "fail2ban is not running: failed logins are not banned",
                    "`systemctl start fail2ban`; see `journalctl -u fail2ban`")]  # fmt: skip


def firewall(ctx: Context) -> list[Finding] | None:
    done = proc.run(["ufw", "status"], what="ask ufw for its status", check=False, timeout=30)
    if done.returncode == 0 and done.stdout.splitlines()[:1] == ["Status: active"]:
        return []
    return [Finding("firewall", "ufw", "critical", "the firewall (ufw) is not active: every port is open",
                    "run `shuttle launch` to turn it back on")]  # fmt: skip


def reboot(ctx: Context, marker: Path = REBOOT_REQUIRED) -> list[Finding] | None:
    if not marker.exists():
        return []
    packages = marker.with_name(marker.name + ".pkgs")
    names = sorted(set(packages.read_text().split())) if packages.is_file() else []
    which = f" ({', '.join(names)})" if names else ""
    return [Finding("reboot", "security updates", "warning",
                    f"installed updates need a reboot to take effect{which}",
                    "reboot the host at a quiet time")]  # fmt: skip


CHECKS: dict[str, Callable[[Context], list[Finding] | None]] = {
    "backup": backup, "backup-check": backup_check, "drill": drill, "certificate": certificate, "disk": disk,
    "services": services, "fail2ban": fail2ban, "firewall": firewall, "reboot": reboot,
}  # fmt: skip
