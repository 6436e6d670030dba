"""Alerts: told once when a problem starts and once when it ends, through a real SMTP server and a real HTTPS
receiver on this machine (no host). The checks' findings are given; the clock is the test's."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from shuttle_host import alerts, channels, checks
from shuttle_host.checks import Finding
from tests.receivers import SmtpServer, WebhookReceiver, make_ca
from tests.unit.conftest import render, write_settings

PASSWORD = "sentinel-smtp-password-7f3a"
SECRET = "sentinel-webhook-secret-91c2"
T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
DISK = Finding("disk", "/", "critical", "free space is low: 1.0 GiB free", "free space")


def decide(state: dict[str, Any], found: dict[str, Any], minutes: int = 0, reminder: int = 0) -> list[alerts.Outgoing]:
    out = alerts.decide(state, found, host="clinic", channels=["mail", "hook"], now=T0 + dt.timedelta(minutes=minutes),
                        reminder_seconds=reminder)  # fmt: skip
    for item in out:
        for name in item.channels:
            alerts.delivered(state, item, name, T0 + dt.timedelta(minutes=minutes))
    return out


def test_a_problem_is_told_once_when_it_starts_and_once_when_it_ends() -> None:
    state: dict[str, Any] = {}
    first = decide(state, {"disk": [DISK]})
    assert [(o.message.state, o.channels) for o in first] == [("problem", ["mail", "hook"])]
    assert first[0].message.host == "clinic" and first[0].message.action == "free space"
    for minute in (5, 10, 15):
        assert decide(state, {"disk": [DISK]}, minute) == []
    resolved = decide(state, {"disk": []}, 20)
    assert [(o.message.state, o.channels) for o in resolved] == [("resolved", ["mail", "hook"])]
    assert decide(state, {"disk": []}, 25) == [] and state["active"] == {} and state["resolving"] == {}


def test_a_channel_that_did_not_accept_is_tried_again_and_only_it() -> None:
    state: dict[str, Any] = {}
    out = alerts.decide(state, {"disk": [DISK]}, host="h", channels=["mail", "hook"], now=T0, reminder_seconds=0)
    alerts.delivered(state, out[0], "mail", T0)  # the webhook's server was down
    again = decide(state, {"disk": [DISK]}, 5)
    assert [(o.message.state, o.channels) for o in again] == [("problem", ["hook"])]
    assert decide(state, {"disk": [DISK]}, 10) == []


def test_a_reminder_comes_at_most_once_per_period() -> None:
    state: dict[str, Any] = {}
    decide(state, {"disk": [DISK]}, 0, reminder=3600)
    assert decide(state, {"disk": [DISK]}, 30, reminder=3600) == []
    assert [o.message.state for o in decide(state, {"disk": [DISK]}, 60, reminder=3600)] == ["reminder"]
    assert decide(state, {"disk": [DISK]}, 90, reminder=3600) == []


def test_a_check_that_could_not_judge_neither_raises_nor_resolves() -> None:
    state: dict[str, Any] = {}
    service = Finding("services", "app", "critical", "the service app is exited", "start it")
    decide(state, {"services": [service]})
    assert decide(state, {"services": None}, 5) == [] and "services:app" in state["active"]


def test_the_state_survives_a_restart_of_the_agent_as_json() -> None:
    state: dict[str, Any] = {}
    decide(state, {"disk": [DISK]})
    reloaded = json.loads(json.dumps(state))
    assert decide(reloaded, {"disk": [DISK]}, 5) == []
    assert [o.message.state for o in decide(reloaded, {"disk": []}, 10)] == ["resolved"]


def test_a_switched_off_check_drops_its_alerts_silently() -> None:
    state: dict[str, Any] = {}
    decide(state, {"disk": [DISK]})
    assert decide(state, {"services": []}, 5) == [] and state["active"] == {}


def test_free_space_is_low_below_the_smaller_threshold() -> None:
    gib = 2**30
    usage = lambda total, free: lambda path: (total * gib, (total - free) * gib, free * gib)  # noqa: E731
    assert checks.low_space("/", 10, 5, usage(1000, 6)) is None  # 0.6 %, but 6 GiB free
    assert checks.low_space("/", 10, 5, usage(1000, 4)) is not None
    assert checks.low_space("/", 10, 5, usage(20, 2.5)) is None  # 12.5 % free on a small disk
    assert "1.0 GiB free of 20.0 GiB" in str(checks.low_space("/", 10, 5, usage(20, 1)))


def test_the_reboot_check_names_the_packages(tmp_path: Path) -> None:
    marker = tmp_path / "reboot-required"
    assert checks.reboot(None, marker) == []  # type: ignore[arg-type]
    marker.write_text("*** System restart required ***\n")
    (tmp_path / "reboot-required.pkgs").write_text("linux-image-amd64\nlibc6\n")
    (finding,) = checks.reboot(None, marker)  # type: ignore[arg-type]
    assert "libc6, linux-image-amd64" in finding.message and finding.severity == "warning"


@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory):
    ca, cert, key = make_ca(tmp_path_factory.mktemp("ca"), ["127.0.0.1", "localhost"])
    smtp = SmtpServer(cert, key, "alerts", PASSWORD)
    hook = WebhookReceiver(cert, key)
    ports = smtp.start(), hook.start()
    yield ca, smtp, hook, ports
    smtp.stop()
    hook.stop()


def alerts_section(layout: dict[str, Any], ca: Path, smtp_port: int, hook_port: int, signature: str) -> dict:
    email = [
        {
            "name": "mail",
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "starttls",
            "ca_file": str(ca),
            "user": "alerts",
            "password": PASSWORD,
            "sender": "emr@clinic.example.org",
            "to": ["it@clinic.example.org"],
        }
    ]
    hooks = [{"name": "hook", "url": f"https://localhost:{hook_port}/alerts", "secret": SECRET, "signature": signature,
              "ca_file": str(ca)}]  # fmt: skip
    variables = {"alerts_layout": layout, "alerts_email": email, "alerts_webhooks": hooks}
    section = json.loads(render("alerts", "settings.json.j2", variables))
    secrets = json.loads(render("alerts", "secrets.json.j2", variables))
    for channel in section["channels"]:  # the role copies each CA to the alerts directory: here it stays where it is
        channel["ca_file"] = str(ca)
    secret_file = Path(layout["secrets_dir"]) / layout["secrets"]["alerts"]
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(json.dumps(secrets))
    assert PASSWORD not in json.dumps(section) and SECRET not in json.dumps(section)
    return section


@pytest.mark.parametrize("signature", ["header", "hmac"])
def test_alerts_reach_a_real_smtp_server_and_https_receiver(layout, receivers, signature, monkeypatch) -> None:
    ca, smtp, hook, (smtp_port, hook_port) = receivers
    smtp.mails.clear()
    hook.calls.clear()
    section = {**alerts_section(layout, ca, smtp_port, hook_port, signature), "checks": ["disk"]}
    conf = write_settings(Path(layout["settings_dir"]), layout, alerts=section)
    found = {"disk": [DISK]}
    monkeypatch.setattr(alerts, "look", lambda settings, now, memory: found)
    clock = iter([T0, T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=10)])
    alerts.run(conf, lambda: next(clock))
    alerts.run(conf, lambda: next(clock))
    found["disk"] = []
    alerts.run(conf, lambda: next(clock))
    assert [m.subject.split(" disk:")[0] for m in smtp.mails] == [
        "[Shuttle] clinic: PROBLEM",
        "[Shuttle] clinic: RESOLVED",
    ]
    assert smtp.mails[0].recipients == ["it@clinic.example.org"] and "What to do: free space" in smtp.mails[0].body
    assert [call["body"]["state"] for call in hook.calls] == ["problem", "resolved"]
    body = hook.calls[0]["body"]
    assert {k: body[k] for k in ("host", "check", "severity")} == {
        "host": "clinic",
        "check": "disk",
        "severity": "critical",
    }
    headers = hook.calls[0]["headers"]
    if signature == "hmac":
        expected = hmac.new(SECRET.encode(), hook.calls[0]["raw"], hashlib.sha256).hexdigest()
        assert headers["X-Shuttle-Signature"] == f"sha256={expected}" and "X-Shuttle-Token" not in headers
    else:
        assert headers["X-Shuttle-Token"] == SECRET


def test_a_wrong_password_is_reported_with_the_servers_answer(layout, receivers) -> None:
    ca, _smtp, _hook, (smtp_port, hook_port) = receivers
    section = alerts_section(layout, ca, smtp_port, hook_port, "header")
    conf = write_settings(Path(layout["settings_dir"]), layout, alerts=section)
    Path(conf.layout.secret("alerts")).write_text(json.dumps({"mail": "wrong", "hook": SECRET}))
    (mail, hook) = channels.load(conf)
    message = channels.Message("clinic", "test", "t", "test", "warning", "m", "a", "now")
    answer = mail.send(message)
    assert not answer.ok and answer.answer.startswith("535") and "wrong" not in answer.answer
    assert hook.send(message).ok


def test_a_relay_whose_certificate_is_not_trusted_is_refused(layout, receivers) -> None:
    ca, smtp, _hook, (smtp_port, hook_port) = receivers
    section = alerts_section(layout, ca, smtp_port, hook_port, "header")
    section["channels"][0]["ca_file"] = ""  # the system's CAs do not know the test CA
    conf = write_settings(Path(layout["settings_dir"]), layout, alerts=section)
    before = len(smtp.mails)
    answer = channels.load(conf)[0].send(channels.Message("clinic", "test", "t", "test", "warning", "m", "a", "now"))
    assert not answer.ok and "CERTIFICATE_VERIFY_FAILED" in answer.answer and len(smtp.mails) == before
