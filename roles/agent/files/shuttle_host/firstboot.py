"""The first boot of an instance made from a baked image: its own secrets, settings and OpenEMR.

`shuttle bake` left everything installed and the images loaded, with no secret and nothing started.
At the instance's first boot (the first-boot unit) this generates the instance's secrets and
OpenEMR admin password, applies its own settings (`seed`), starts the stack from the baked images (no
network needed), says on the console and in the motd where the credentials are, and disables itself.

Every step is safe to repeat: a boot that fails midway (the unit fails and says why) is retried at
the next boot or with `systemctl start` of the unit.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from shuttle_host import backup, files, keys, netinfo, proc, rules, seed, site_globals
from shuttle_host.database import Database
from shuttle_host.errors import Failed, Refused
from shuttle_host.settings import Settings
from shuttle_host.stack import Stack

_PLACEHOLDER = re.compile(r"@@([a-z:-]+)@@")


def scheduled(timer: str) -> bool:
    """Whether the timer unit the backup role installed has a schedule (the drill's can be off)."""
    unit = Path("/etc/systemd/system") / timer
    return not unit.is_file() or "OnCalendar=" in unit.read_text()


def say(text: str) -> None:
    """The unit sends stdout to the journal and the console."""
    print(f"first boot: {text}", flush=True)


def fill(template: str, values: dict[str, str]) -> str:
    """Replace @@NAME@@ placeholders; one left over means the bake and this agent disagree."""
    text = _PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), template)
    left = sorted({f"@@{name}@@" for name in _PLACEHOLDER.findall(text)})
    if left:
        raise Failed(f"placeholders without a value: {', '.join(left)}")
    return text


def write_caddyfile(settings: Settings, chosen: dict[str, str]) -> None:
    """A domain given at first boot: ACME when an email is known (given now or baked), else the internal CA."""
    if "domain" not in chosen:
        return
    stack = settings.stack
    email = chosen.get("acme.email") or stack.acme_email
    variant = "acme" if email else "internal"
    template = (Path(settings.layout.firstboot_dir) / f"Caddyfile.{variant}").read_text()
    files.write_atomic(
        Path(stack.proxy_caddyfile), fill(template, {"domain": chosen["domain"], "acme-email": email}), 0o644
    )


def set_up_backups(settings: Settings, chosen: dict[str, str]) -> str | None:
    """Point backups at the target (given now or baked), with this instance's own passphrase; the notice."""
    layout = settings.layout
    if not settings.has("backup"):
        if "backup.target" in chosen:
            raise Failed(f"a backup.target was given but {settings.path('backup')} (the backup settings) is missing")
        return None
    data = files.read_json(settings.path("backup"))
    data["host"] = rules.host_id(netinfo.hostname())  # each instance is a host of its own in a shared repository
    if "backup.target" in chosen:
        data["repository"] = chosen["backup.target"]
        data["s3_access_key_id"] = chosen.get("backup.s3_access_key_id", "")
    files.write_json(settings.path("backup"), data)
    settings.forget("backup")
    if "backup.target" in chosen and "backup.s3_secret_access_key" in chosen:
        secret = layout.secret("backup_s3_secret")
        secret.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        files.write_atomic(secret, chosen["backup.s3_secret_access_key"] + "\n")
    if not settings.backup.repository:
        return None
    made = keys.ensure(settings)
    timers = [f"{layout.units[key]}.timer" for key in ("backup", "backup_check", "drill")]
    proc.run(["systemctl", "enable", "--now", *filter(scheduled, timers)], what="enable the backup timers")
    opened = backup.init_repository(settings)  # an instance's first boot is its launch: the one place to create it
    return f"{keys.notice(settings, made['public_key'])}; {opened['message']}"


def set_admin_password_hash(settings: Settings, stack: Stack, chosen: dict[str, str]) -> None:
    if "admin_password_hash" in chosen:
        Database(stack.docker, stack.settings.db_name).set_password_hash(
            stack.settings.admin_user, chosen["admin_password_hash"]
        )


def first_boot(settings: Settings) -> list[str]:
    """Every step, in order; the lines that tell where OpenEMR and its credentials are."""
    layout = settings.layout
    chosen, source = seed.read(Path(layout.firstboot_seed), Path(layout.cloud_user_data))
    say(f"configuring this instance (settings from {source})")
    stack = Stack(settings)
    stack.ensure_secrets()
    stack.write_env()
    write_caddyfile(settings, chosen)
    backups = set_up_backups(settings, chosen)
    say("starting OpenEMR (images from this image; no registry needed)")
    stack.start(timeout=settings.firstboot.ready_timeout)
    set_admin_password_hash(settings, stack, chosen)
    site_globals.configure(stack, chosen.get("domain"))
    admin, password = stack.settings.admin_user, layout.secret("admin")
    login = (
        f"Log in as '{admin}' with the password whose hash was given in {source}."
        if "admin_password_hash" in chosen
        else f"Log in as '{admin}' with the password in {password} (root only: sudo cat {password})."
    )
    return [
        f"Shuttle: OpenEMR is ready at {stack.url(chosen.get('domain'))}",
        f"  {login}",
        f"  {backups}" if backups else "  Backups are off: no backup.target was given.",
    ]


def announce(settings: Settings, lines: list[str]) -> None:
    """The console (through the unit's output) and every later login (the motd) get the same words."""
    for line in lines:
        say(line)
    motd = Path(settings.layout.motd_file)
    motd.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(motd, "\n".join(["", *lines, ""]) + "\n", 0o644)


def run(settings: Settings) -> int:
    """`firstboot`: once; 0 done (or already done), 1 failed (retried next boot), 2 refused settings."""
    layout = settings.layout
    done = Path(layout.firstboot_done)
    if done.exists():
        say(f"already done ({done} exists)")
        return 0
    retry = f"To run it now: systemctl start {layout.units['firstboot']}"
    try:
        lines = first_boot(settings)
    except Refused as problem:
        announce(settings, [f"Shuttle: first boot refused: {problem}", f"  Nothing was started. {retry}"])
        return 2
    except Failed as problem:
        announce(settings, [f"Shuttle: first boot failed: {problem}", f"  It runs again at the next boot. {retry}"])
        return 1
    announce(settings, lines)
    done.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(done, time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()), 0o644)
    proc.run(["systemctl", "disable", f"{layout.units['firstboot']}.service"], what="disable the first-boot unit")
    return 0
