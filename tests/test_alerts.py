"""Alerts on a real host, to a real SMTP server (aiosmtpd: STARTTLS and AUTH required) and a real HTTPS webhook
receiver on this machine, which the host reaches at its network's gateway, as it would a relay on its LAN.

One copy of the launched Debian 13 host, launched again with alerts (checks every 15 s), is taken through:
`shuttle alerts test` (both channels and OpenEMR's own mail; a wrong SMTP password exits 1 naming the channel
and the server's answer); four conditions at once (a backup whose target is gone, a stopped app container, a
free-space threshold set above what the host has, a provided certificate that expires in 3 days), each told
once by e-mail and once by webhook; a reboot with the problems still there (the timer comes back and tells
nobody twice); the fixes, each told once as resolved; and the sentinel password and secret, which appear in
no argv, run log, NDJSON line or journal entry.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import AGENT, LAYOUT, SECRETS_DIR, Run, admin_public_key, run_shuttle, site, stack_config
from tests.harness import hosts
from tests.pebble import provided_certificate
from tests.receivers import SmtpServer, WebhookReceiver, make_ca, wait_for

pytestmark = pytest.mark.hosts

PASSWORD = f"sentinel-smtp-{secrets.token_hex(6)}-do-not-leak"
SECRET = f"sentinel-hook-{secrets.token_hex(6)}-do-not-leak"
SMTP_USER = "shuttle-alerts"
BACKUPS = "/srv/backups/clinic"
INTERVAL = 10
STATE = LAYOUT["alerts_state"]
BACKUP_UNIT = f"{LAYOUT['units']['backup']}.service"
#: The four conditions, as the alert keys the agent gives them (check:subject).
CONDITIONS = ("backup:last run", "services:app", "disk:/", "certificate:port 443")


@dataclass
class Rig:
    host: hosts.TestHost
    tmp: Path
    smtp: SmtpServer
    hook: WebhookReceiver
    config: dict
    runs: list[Run]

    def launch(self, config: dict) -> Run:
        run = site(self.host, self.tmp, config).launch("--json")
        self.runs.append(run)
        assert run.returncode == 0, run.explain()
        return run

    def shuttle(self, *args: str) -> Run:
        """A verb through the site's inventory (made again: a rebooted host has a new SSH port)."""
        run = run_shuttle(*args, "-i", str(site(self.host, self.tmp, self.config).inventory), "--json", tmp=self.tmp)
        self.runs.append(run)
        return run

    def calls(self, state: str) -> list[str]:
        return [f"{c['body']['check']}:{c['body']['subject']}" for c in self.hook.calls if c["body"]["state"] == state]


def _keys_of_mails(rig: Rig, state: str) -> list[str]:
    return [m.headers["X-Shuttle-Check"].split()[0] + ":" + _subject_of(m.body) for m in rig.smtp.mails
            if m.headers.get("X-Shuttle-Check", "").endswith(state)]  # fmt: skip


def _subject_of(body: str) -> str:
    line = next(line for line in body.splitlines() if line.startswith("Check: "))
    return line.split("(", 1)[1].rstrip(")")


def alerts_config(gateway: str, ca: Path, smtp_port: int, hook_port: int, cert: Path, key: Path, **alerts: object):
    return stack_config(
        swap_size_mb=512,
        ssh={"admin_keys": [admin_public_key()]},
        tls={"mode": "provided", "cert_path": str(cert), "key_path": str(key)},
        backup={"target": BACKUPS},
        alerts={
            "email": [{"name": "relay", "host": gateway, "port": smtp_port, "security": "starttls",
                       "ca_file": str(ca), "user": SMTP_USER, "password": PASSWORD,
                       "from": "emr@clinic.example.org", "to": ["it@clinic.example.org"]}],
            "webhooks": [{"name": "hook", "url": f"https://{gateway}:{hook_port}/shuttle", "secret": SECRET,
                          "signature": "hmac", "ca_file": str(ca)}],
            "interval": f"{INTERVAL}s",
            **alerts,
        },
    )  # fmt: skip


@pytest.fixture(scope="module")
def rig(clone, launched_snapshot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("alerts")
    gateway = hosts.gateway(hosts.ensure_network())
    ca, server_cert, server_key = make_ca(tmp / "ca", [gateway])
    smtp, hook = SmtpServer(server_cert, server_key, SMTP_USER, PASSWORD), WebhookReceiver(server_cert, server_key)
    smtp_port, hook_port = smtp.start(), hook.start()
    host = clone(launched_snapshot)
    cert, key = provided_certificate(tmp / "tls-3", days=3)
    config = alerts_config(gateway, ca, smtp_port, hook_port, cert, key, disk_free={"percent": 99.99, "gib": 10**6})
    try:
        rig = Rig(host, tmp, smtp, hook, config, [])
        rig.launch(config)
        yield rig
    finally:
        smtp.stop()
        hook.stop()


def test_alerts_test_delivers_through_both_channels_and_openemr(rig: Rig) -> None:
    before_mails, before_calls = len(rig.smtp.mails), len(rig.hook.calls)
    run = rig.shuttle("alerts", "test")
    assert run.returncode == 0, run.explain()
    new_mails = rig.smtp.mails[before_mails:]
    assert sorted(m.subject for m in new_mails) == [
        f"[Shuttle] {rig.host.name}: TEST OpenEMR mail",
        f"[Shuttle] {rig.host.name}: TEST test: a test message from `shuttle alerts test`",
    ], [m.subject for m in new_mails]
    assert all(m.recipients == ["it@clinic.example.org"] for m in new_mails)
    assert [c["body"]["state"] for c in rig.hook.calls[before_calls:]] == ["test"]


def test_a_wrong_smtp_password_fails_naming_the_channel_and_the_servers_answer(rig: Rig) -> None:
    secret_file = f"{SECRETS_DIR}/{LAYOUT['secrets']['alerts']}"
    saved = rig.host.exec(f"cat {secret_file}", check=True).stdout
    rig.host.exec(f"cat > {secret_file}", check=True, input=json.dumps({"relay": "wrong-password", "hook": SECRET}))
    try:
        run = rig.shuttle("alerts", "test")
    finally:
        rig.host.exec(f"cat > {secret_file}", check=True, input=saved)
    assert run.returncode == 1, run.explain()
    assert "relay: 535" in run.failures, run.explain()
    assert "hook" not in run.failures.split("relay: 535")[0], run.failures


def test_each_condition_is_told_once_survives_a_reboot_and_is_resolved_once(rig: Rig, tmp_path: Path) -> None:
    host = rig.host
    host.exec(f"rm -rf {BACKUPS}", check=True)
    host.exec(f"systemctl start {BACKUP_UNIT} || true")
    host.exec("docker stop $(docker ps -q --filter label=com.docker.compose.service=app)", check=True)
    wait_for("a problem mail and webhook call for each condition",
             lambda: set(CONDITIONS) <= set(_keys_of_mails(rig, "problem")) and set(CONDITIONS) <= set(
                 rig.calls("problem")), timeout=600)  # fmt: skip
    problem = next(m for m in rig.smtp.mails if m.headers.get("X-Shuttle-Check") == "services problem")
    assert rig.host.name in problem.subject and "What to do:" in problem.body, problem.body
    time.sleep(3 * INTERVAL)  # three more checks with every problem still there
    told, called = _keys_of_mails(rig, "problem"), rig.calls("problem")
    for key in CONDITIONS:
        assert told.count(key) == 1 and called.count(key) == 1, (key, told, called)

    subprocess.run(["docker", "restart", host.name], check=True, capture_output=True)
    host.refresh()
    wait_for("the host to boot", lambda: host.exec("systemctl is-system-running").stdout.strip() in (
        "running", "degraded"), timeout=180)  # fmt: skip
    checked = host.exec(f"cat {STATE}", check=True).stdout
    wait_for("a check after the reboot", lambda: host.exec(
        f"cat {STATE}").stdout != checked, timeout=4 * INTERVAL + 60)  # fmt: skip
    assert host.exec(f"systemctl is-active {LAYOUT['units']['alerts']}.timer").stdout.strip() == "active"
    time.sleep(2 * INTERVAL)
    assert _keys_of_mails(rig, "problem") == told and rig.calls("problem") == called, "told again after the reboot"
    status = rig.shuttle("status")
    report = status.summary["status"][host.name]
    active = {f"{a['check']}:{a['subject']}" for a in report["alerts"]}
    assert set(CONDITIONS) <= active, active

    cert, key = provided_certificate(rig.tmp / "tls-60", days=60)
    fixed = {**rig.config, "tls": {**rig.config["tls"], "cert_path": str(cert), "key_path": str(key)}}
    fixed["alerts"] = {k: v for k, v in rig.config["alerts"].items() if k != "disk_free"}
    rig.launch(fixed)  # starts the app again, creates the repository again, the default free-space threshold
    backup = host.exec(f"systemctl start {BACKUP_UNIT}")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    wait_for("a resolved mail and webhook call for each condition",
             lambda: set(CONDITIONS) <= set(_keys_of_mails(rig, "resolved")) and set(CONDITIONS) <= set(
                 rig.calls("resolved")), timeout=600)  # fmt: skip
    time.sleep(2 * INTERVAL)
    resolved, called_back = _keys_of_mails(rig, "resolved"), rig.calls("resolved")
    for key in CONDITIONS:
        assert resolved.count(key) == 1 and called_back.count(key) == 1, (key, resolved, called_back)
    assert _keys_of_mails(rig, "problem") == told, "a fixed problem was told again"


def test_the_password_and_secret_reach_no_argv_log_event_or_journal(rig: Rig, recorder) -> None:
    mark = recorder.mark()
    run = rig.shuttle("alerts", "test")
    assert run.returncode == 0, run.explain()
    rig.host.exec(f"{AGENT} alerts run")
    commands = recorder.since(mark)
    assert len(commands) > 20, "the exec log recorded too little to prove anything"
    for index, value in enumerate((PASSWORD, SECRET)):
        assert not [c[:60] for c in commands if value in c], f"secret #{index} was on a command line"
        for done in rig.runs:
            assert value not in done.stdout + done.stderr, f"secret #{index} was in a run's output"
        grep = ["grep", "-rlF", "--exclude=shuttle.yml", "-f", "-", str(rig.tmp / "logs")]
        found = subprocess.run(grep, capture_output=True, text=True, check=False, input=value + "\n").stdout
        assert found == "", f"secret #{index} was left in {found}"
        in_journal = rig.host.exec(
            'p=$(mktemp -p /run); cat > "$p"; journalctl | grep -cF -f "$p"; rm -f "$p"', input=value + "\n"
        ).stdout.split()
        assert in_journal == ["0"], f"secret #{index} was in the journal"
