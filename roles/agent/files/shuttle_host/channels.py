"""Where alerts go: e-mail through an SMTP relay, and webhooks. Each send says whether it was accepted.

A channel is what the alerts role wrote into alerts.json (no secrets) plus its secret from the layout's
`alerts` secret file (root-only): an SMTP password, or a webhook's shared secret. The secret is read
here, at send time, and goes only to the relay or the webhook's server: never into an argv, a log line
or an answer (an answer quotes what the server said, which never echoes it).

TLS is always verified, against the system's CAs or the channel's own CA file: an e-mail relay speaks
STARTTLS or implicit TLS; a webhook is https, or http only when the user allowed it for an address on a
private network.

A webhook's JSON body (documented in the README): host, check, subject, state (problem, resolved,
reminder, test), severity (critical, warning), message, action, time (UTC, ISO 8601). With a secret, it
is sent in the `X-Shuttle-Token` header (`signature: header`), or the body is signed with it and the
signature sent as `X-Shuttle-Signature: sha256=<hex HMAC-SHA256 of the body>` (`signature: hmac`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from shuttle_host import files
from shuttle_host.errors import Refused
from shuttle_host.settings import Settings

TIMEOUT = 30
EMAIL_SECURITY = ("starttls", "tls")
SIGNATURES = ("header", "hmac")
TOKEN_HEADER = "X-Shuttle-Token"
SIGNATURE_HEADER = "X-Shuttle-Signature"


@dataclass(frozen=True)
class Message:
    """One alert message, as every channel renders it."""

    host: str
    check: str
    subject: str
    state: str  # problem, resolved, reminder, test
    severity: str  # critical, warning
    message: str
    action: str
    time: str

    def title(self) -> str:
        label = {"problem": "PROBLEM", "resolved": "RESOLVED", "reminder": "STILL A PROBLEM", "test": "TEST"}
        return f"[Shuttle] {self.host}: {label.get(self.state, self.state.upper())} {self.check}: {self.message}"

    def text(self) -> str:
        lines = [
            f"Host: {self.host}",
            f"Check: {self.check} ({self.subject})",
            f"State: {self.state} ({self.severity})",
            f"When: {self.time}",
            "",
            self.message,
        ]
        if self.action and self.state != "resolved":
            lines += ["", f"What to do: {self.action}"]
        return "\n".join(lines) + "\n"

    def body(self) -> dict[str, Any]:
        return {
            "host": self.host, "check": self.check, "subject": self.subject, "state": self.state,
            "severity": self.severity, "message": self.message, "action": self.action, "time": self.time,
        }  # fmt: skip


@dataclass(frozen=True)
class Answer:
    """Whether a channel accepted a message, and in its server's words when it did not."""

    ok: bool
    answer: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "answer": self.answer}


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str  # email or webhook
    spec: dict[str, Any]
    secret: str

    def tls_context(self) -> ssl.SSLContext:
        """The system's CAs, or only the channel's CA file when one is given (a private relay)."""
        ca_file = self.spec.get("ca_file") or None
        return ssl.create_default_context(cafile=ca_file)

    def send(self, message: Message) -> Answer:
        try:
            return _send_email(self, message) if self.kind == "email" else _send_webhook(self, message)
        except (OSError, smtplib.SMTPException, ValueError) as problem:
            return Answer(False, _describe(problem))


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    """The relay's answer for each recipient it refused."""
    return "; ".join(f"{rcpt}: {code} {err.decode(errors='replace')}" for rcpt, (code, err) in refused.items())


def _describe(problem: BaseException) -> str:
    if isinstance(problem, smtplib.SMTPResponseException):
        text = (
            problem.smtp_error.decode(errors="replace")
            if isinstance(problem.smtp_error, bytes)
            else str(problem.smtp_error)
        )
        return f"{problem.smtp_code} {text}".strip()
    if isinstance(problem, smtplib.SMTPRecipientsRefused):
        return _refusals(problem.recipients)
    if isinstance(problem, urllib.error.HTTPError):
        return f"HTTP {problem.code} {problem.reason}"
    if isinstance(problem, urllib.error.URLError):
        return f"cannot reach it: {problem.reason}"
    return f"{type(problem).__name__}: {problem}" if str(problem) else type(problem).__name__


def _send_email(channel: Channel, message: Message) -> Answer:
    spec = channel.spec
    mail = EmailMessage()
    mail["From"] = spec["sender"]
    mail["To"] = ", ".join(spec["recipients"])
    mail["Subject"] = message.title()
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid(domain=str(spec["sender"]).rpartition("@")[2] or None)
    mail["X-Shuttle-Check"] = f"{message.check} {message.state}"
    mail.set_content(message.text())
    context = channel.tls_context()
    host, port = str(spec["host"]), int(spec["port"])
    smtp: smtplib.SMTP
    if spec["security"] == "tls":
        smtp = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=TIMEOUT)
    with smtp:
        smtp.ehlo()
        if spec["security"] == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
        if spec.get("user"):
            smtp.login(str(spec["user"]), channel.secret)
        refused = smtp.send_message(mail)
    if refused:
        return Answer(False, _refusals(refused))
    return Answer(True, f"accepted by {host}:{port} for {len(spec['recipients'])} recipient(s)")


def signed_headers(body: bytes, secret: str, signature: str) -> dict[str, str]:
    """The headers that carry a webhook's secret: the token itself, or the body's HMAC-SHA256 with it."""
    if not secret:
        return {}
    if signature == "hmac":
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return {SIGNATURE_HEADER: f"sha256={digest}"}
    return {TOKEN_HEADER: secret}


def _send_webhook(channel: Channel, message: Message) -> Answer:
    spec = channel.spec
    body = json.dumps(message.body(), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "shuttle-host",
               **signed_headers(body, channel.secret, str(spec.get("signature") or "header"))}  # fmt: skip
    request = urllib.request.Request(str(spec["url"]), data=body, headers=headers, method="POST")
    context = channel.tls_context() if str(spec["url"]).startswith("https://") else None
    with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
        return Answer(True, f"HTTP {response.status}")


def load(settings: Settings) -> list[Channel]:
    """The configured channels with their secrets; Refused when the secret file does not fit them."""
    path = settings.layout.secret("alerts")
    secrets = files.read_json(path) if path.is_file() else {}
    if not isinstance(secrets, dict):
        raise Refused(f"{path}: expected a JSON object of channel secrets")
    channels = []
    for spec in settings.alerts.channels:
        name, kind = str(spec.get("name") or ""), str(spec.get("kind") or "")
        if kind not in ("email", "webhook") or not name:
            raise Refused(f"alerts.json: a channel needs a name and a kind (email or webhook): {spec!r}")
        channels.append(Channel(name, kind, dict(spec), str(secrets.get(name) or "")))
    return channels
