"""OpenEMR's own mail (password resets, reminders) through the relay of the first e-mail alert channel.

The OpenEMR container has no mail server of its own (openemr#14074): it sends only through the SMTP
relay its globals name. Those globals are set here with OpenEMR's own code in the running app, as its
Administration > Config > Notifications page would set them (openemr.set_globals): `SMTP_PASS` is stored
encrypted with the site's keys, and a second launch changes nothing.

A test mail goes through OpenEMR's MyMailer, the class its own senders use, so it proves the path a
password-reset mail takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shuttle_host import openemr
from shuttle_host.channels import Channel
from shuttle_host.docker import Docker

#: OpenEMR's SMTP_SECURE values: "tls" is STARTTLS, "ssl" implicit TLS (PHPMailer's names).
SECURE = {"starttls": "tls", "tls": "ssl"}

_TEST = """require_once $GLOBALS['srcdir'] . '/classes/postmaster.php';
$mail = new MyMailer();
$mail->SetFrom($GLOBALS['patient_reminder_sender_email'], 'OpenEMR');
foreach ($request['to'] as $address) {
    $mail->AddAddress($address);
}
$mail->Subject = $request['subject'];
$mail->Body = $request['body'];
$sent = $mail->Send();
shuttle_answer(['ok' => (bool) $sent, 'answer' => $sent ? 'accepted by the relay' : (string) $mail->ErrorInfo]);
"""


def wanted_globals(relay: Channel) -> dict[str, str]:
    """OpenEMR's mail globals for a relay (its password included: this only ever goes to the app's stdin)."""
    spec = relay.spec
    return {
        "EMAIL_METHOD": "SMTP",
        "SMTP_HOST": str(spec["host"]),
        "SMTP_PORT": str(spec["port"]),
        "SMTP_SECURE": SECURE[str(spec["security"])],
        "SMTP_Auth": "1" if spec.get("user") else "0",
        "SMTP_USER": str(spec.get("user") or ""),
        "SMTP_PASS": relay.secret,
        "patient_reminder_sender_email": str(spec["sender"]),
        "practice_return_email_path": str(spec["sender"]),
    }


def configure(docker: Docker, sites: Path, relay: Channel) -> list[str]:
    """Point OpenEMR's mail at the relay; the names of the globals that changed."""
    return openemr.set_globals(docker, sites, "set its mail settings", wanted_globals(relay), encrypted={"SMTP_PASS"})


def send_test(docker: Docker, sites: Path, to: list[str], host: str) -> dict[str, Any]:
    """One mail from OpenEMR itself; {"ok": bool, "answer": the relay's words when it failed}."""
    request = {
        "to": to,
        "subject": f"[Shuttle] {host}: TEST OpenEMR mail",
        "body": f"OpenEMR on {host} sent this through its SMTP settings: its own mail reaches you.\n",
    }
    answer = openemr.ask(docker, sites, "send a test mail", _TEST, request)
    return {"ok": bool(answer.get("ok")), "answer": str(answer.get("answer") or "")}
