"""Real receivers for alerts, on this machine: an SMTP server (aiosmtpd, STARTTLS and AUTH required) and an
HTTPS webhook receiver (http.server behind TLS), both with certificates from a throwaway CA made by openssl.

Test hosts reach them at the Docker bridge's gateway address, as a host reaches a relay on its network.
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    """A TCP port nothing listens on now (aiosmtpd probes its own port, so it cannot take 0)."""
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def make_ca(directory: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for `names` (DNS names or IP addresses): (ca.pem, cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "key.pem", "csr.pem", "cert.pem"))
    run = lambda *argv: subprocess.run(argv, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=Shuttle test receivers CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=receiver",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    alt = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in names)
    ext = directory / "ext.cnf"
    # What Python 3.13's strict verification (Debian 13's) asks of a chain: key usages and key identifiers.
    ext.write_text(
        f"subjectAltName={alt}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    subject: str
    body: str
    headers: dict[str, str]


@dataclass
class _Handler:
    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)  # unfolds long headers
        body = "" if parsed.is_multipart() else str(parsed.get_content())  # type: ignore[attr-defined]
        headers = {name: str(value) for name, value in parsed.items()}
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), headers.get("Subject", ""), body, headers))
        return "250 OK"


class SmtpServer:
    """aiosmtpd with STARTTLS required and AUTH (user/password) required before mail is accepted."""

    def __init__(self, cert: Path, key: Path, user: str, password: str, port: int = 0) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.handler = _Handler()
        self.user, self.password = user, password
        self.controller = Controller(
            self.handler, hostname="0.0.0.0", port=port or free_port(), tls_context=context, require_starttls=True,
            authenticator=self._authenticate, auth_required=True, server_hostname="receiver",
        )  # fmt: skip

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.user
            and (data.password.decode() == self.password)
        )
        return AuthResult(success=ok, handled=False)

    def start(self) -> int:
        self.controller.start()
        return int(self.controller.port)

    def stop(self) -> None:
        self.controller.stop()

    @property
    def mails(self) -> list[Mail]:
        return self.handler.mails


class WebhookReceiver:
    """An HTTPS server that keeps every POST: its headers and JSON body."""

    def __init__(self, cert: Path, key: Path, port: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        calls = self.calls

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                calls.append({"path": self.path, "headers": dict(self.headers.items()), "raw": raw,
                              "body": json.loads(raw or b"null")})  # fmt: skip
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> int:
        self.thread.start()
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(what: str, condition: Callable[[], bool], timeout: float, interval: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
