"""Alerts: each problem told once when it starts and once when it is resolved, to every channel.

The alerts unit's timer runs `alerts run`: the checks (checks.py) find what is wrong now; this module
compares that with what it told before (the layout's `alerts_state`, on disk, so a reboot forgets
nothing) and decides who must hear what:

- a new problem: a "problem" message to every channel;
- a problem that persists: nothing, except a "reminder" once every `reminder_seconds` (0: never);
- a problem gone: a "resolved" message to every channel that was told of it;
- a channel that did not accept a message is tried again at the next run, and only it.

A check that could not judge (None) leaves its alerts as they were; a check switched off drops its
alerts without a word. Every message and every delivery is also a journal line (stderr of the unit).
`decide` is a pure function of the state, the findings and the clock, so all of this is unit-tested.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shuttle_host import channels as channels_module
from shuttle_host import checks, files, mail, proc, rules
from shuttle_host.channels import Answer, Channel, Message
from shuttle_host.checks import Finding
from shuttle_host.docker import Docker
from shuttle_host.errors import Failed, Refused
from shuttle_host.settings import Settings


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Outgoing:
    """A message for some channels, and the alert (its key) whose record a delivery updates."""

    key: str
    message: Message
    channels: list[str]


def _message(host: str, alert: Mapping[str, Any], state: str, now: dt.datetime) -> Message:
    return Message(host=host, check=alert["check"], subject=alert["subject"], state=state,
                   severity=alert["severity"], message=alert["message"], action=alert["action"],
                   time=iso(now))  # fmt: skip


def decide(
    state: dict[str, Any],
    found: Mapping[str, list[Finding] | None],
    *,
    host: str,
    channels: list[str],
    now: dt.datetime,
    reminder_seconds: int,
) -> list[Outgoing]:
    """Update `state` (active and resolving alerts) for what the checks `found` (check -> findings, or None),
    and return what to send. Deliveries are recorded afterwards by `delivered`."""
    active: dict[str, Any] = state.setdefault("active", {})
    resolving: dict[str, Any] = state.setdefault("resolving", {})
    out: list[Outgoing] = []
    current = {finding.key: finding for findings in found.values() if findings for finding in findings}
    for key in [key for key, alert in active.items() if alert["check"] not in found]:
        del active[key]  # its check is switched off
    for key in [key for key, alert in resolving.items() if alert["check"] not in found]:
        del resolving[key]
    for key, finding in current.items():
        alert = active.get(key)
        if alert is None:
            again = resolving.pop(key, None)  # back before everyone heard it was gone: they were told of it
            alert = active[key] = {
                "check": finding.check, "subject": finding.subject, "since": iso(now),
                "told": dict(again["told"]) if again else {}, "reminded": None,
            }  # fmt: skip
        alert.update(severity=finding.severity, message=finding.message, action=finding.action)
        if not channels:
            continue
        untold = [name for name in channels if name not in alert["told"]]
        if untold:
            out.append(Outgoing(key, _message(host, alert, "problem", now), untold))
            continue
        last = _when(alert["reminded"] or max(alert["told"].values()))
        if reminder_seconds and (now - last).total_seconds() >= reminder_seconds:
            alert["reminded"] = iso(now)
            out.append(Outgoing(key, _message(host, alert, "reminder", now), list(channels)))
    for key in [key for key, alert in active.items() if key not in current and found.get(alert["check"]) is not None]:
        alert = active.pop(key)
        alert["pending"] = [name for name in alert["told"] if name in channels]
        alert["resolved"] = iso(now)
        if alert["pending"]:
            resolving[key] = alert
    for key, alert in resolving.items():
        if key not in current and alert["pending"]:
            out.append(Outgoing(key, _message(host, alert, "resolved", now), list(alert["pending"])))
    return out


def delivered(state: dict[str, Any], outgoing: Outgoing, channel: str, now: dt.datetime) -> None:
    """Record that `channel` accepted `outgoing`: it need not hear it again."""
    if outgoing.message.state == "resolved":
        alert = state["resolving"].get(outgoing.key)
        if alert is not None:
            alert["pending"] = [name for name in alert["pending"] if name != channel]
            if not alert["pending"]:
                del state["resolving"][outgoing.key]
        return
    alert = state["active"].get(outgoing.key)
    if alert is not None:
        alert["told"][channel] = iso(now)


def look(settings: Settings, now: dt.datetime, memory: dict[str, Any]) -> dict[str, list[Finding] | None]:
    """Run every enabled check; one that breaks is reported and counts as "could not judge"."""
    context = checks.Context(settings, now, memory)
    found: dict[str, list[Finding] | None] = {}
    for name in settings.alerts.checks:
        try:
            found[name] = checks.CHECKS[name](context)
        except (Failed, OSError, ValueError) as problem:
            proc.say(f"check {name} could not run: {problem}")
            found[name] = None
    return found


def deliver(
    state: dict[str, Any], outgoing: Iterable[Outgoing], by_name: Mapping[str, Channel], now: dt.datetime
) -> list[dict[str, Any]]:
    """Send each message to its channels, recording every acceptance; what happened, for the journal and JSON."""
    report = []
    for item in outgoing:
        proc.say(f"alert {item.message.state} {item.key}: {item.message.message}")
        for name in item.channels:
            channel = by_name.get(name)
            answer = channel.send(item.message) if channel else Answer(False, "no such channel")
            if answer.ok:
                delivered(state, item, name, now)
            proc.say(f"  {name}: {'sent' if answer.ok else 'not sent'} ({answer.answer})")
            report.append({"alert": item.key, "state": item.message.state, "channel": name, **answer.as_dict()})
    return report


def run(settings: Settings, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> dict:
    """`alerts run`: check, tell, remember."""
    path = Path(settings.layout.alerts_state)
    state = files.read_json(path) or {}
    now = clock()
    channels = channels_module.load(settings)
    found = look(settings, now, state.setdefault("memory", {}))
    outgoing = decide(state, found, host=settings.alerts.host, channels=[c.name for c in channels], now=now,
                      reminder_seconds=reminder_seconds(settings))  # fmt: skip
    sent = deliver(state, outgoing, {channel.name: channel for channel in channels}, now)
    state["checked"] = iso(now)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.write_json(path, state)
    return {"active": active(settings), "sent": sent}


def reminder_seconds(settings: Settings) -> int:
    return rules.timespan_seconds(settings.alerts.reminder) if settings.alerts.reminder else 0


def active(settings: Settings) -> list[dict[str, Any]]:
    """The alerts active now, for `status`: check, subject, severity, message, since."""
    state = files.read_json(Path(settings.layout.alerts_state)) or {}
    keep = ("check", "subject", "severity", "message", "action", "since")
    return [{name: alert.get(name) for name in keep} for _key, alert in sorted((state.get("active") or {}).items())]


def _relay(channels: list[Channel]) -> Channel | None:
    return next((channel for channel in channels if channel.kind == "email"), None)


def _sites(settings: Settings) -> tuple[Docker, Path]:
    docker = Docker(settings.layout, settings.stack.compose)
    return docker, Path(docker.volume_path("sites"))


def test(settings: Settings, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> dict:
    """`alerts test`: a test message through every channel, and one mail from OpenEMR itself when it sends
    through the relay; per channel, whether it was accepted (and the server's answer when not)."""
    channels = channels_module.load(settings)
    if not channels:
        raise Refused("no alert channel is configured (alerts.email or alerts.webhooks in shuttle.yml)")
    message = Message(host=settings.alerts.host, check="test", subject="alerts test", state="test",
                      severity="warning", message="a test message from `shuttle alerts test`",
                      action="nothing: this channel works", time=iso(clock()))  # fmt: skip
    results = {}
    for channel in channels:
        answer = channel.send(message)
        proc.say(f"test {channel.name}: {'sent' if answer.ok else 'not sent'} ({answer.answer})")
        results[channel.name] = answer.as_dict()
    relay = _relay(channels)
    if relay is not None and settings.alerts.openemr_mail and settings.stack.mode == "full":
        try:
            docker, sites = _sites(settings)
            results["openemr"] = mail.send_test(docker, sites, list(relay.spec["recipients"]), settings.alerts.host)
        except Failed as problem:
            results["openemr"] = {"ok": False, "answer": str(problem)}
        proc.say(f"test openemr: {'sent' if results['openemr']['ok'] else 'not sent'} ({results['openemr']['answer']})")
    return {"channels": results, "ok": all(result["ok"] for result in results.values())}


def openemr_mail(settings: Settings) -> dict[str, Any]:
    """`alerts openemr-mail`: OpenEMR's SMTP globals set to the relay (a launch runs this)."""
    relay = _relay(channels_module.load(settings))
    if relay is None or not settings.alerts.openemr_mail or settings.stack.mode != "full":
        return {"changed": []}
    docker, sites = _sites(settings)
    return {"changed": mail.configure(docker, sites, relay)}
