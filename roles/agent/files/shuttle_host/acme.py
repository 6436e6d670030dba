"""Whether the proxy serves the ACME certificate for the domain, and if not, why (from Caddy's log).

In acme mode Caddy orders the certificate in the background and, while the ACME CA cannot issue one,
serves a certificate from its internal CA. This looks at what a client is served for the domain (a
TLS handshake on this host) for at most `acme_wait` seconds:

- "acme": a certificate the internal CA did not issue;
- "internal": the internal CA's fallback (the order failed; there is no use waiting longer);
- "none": no certificate for the domain yet when the wait ran out.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from shuttle_host.settings import Settings
from shuttle_host.stack import Stack

ORDER_FAILED = "could not get certificate from issuer"


def _handshake(domain: str, port: int, cafile: str | None) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if cafile:
        context.load_verify_locations(cafile)
    else:
        context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        context.wrap_socket(sock, server_hostname=domain).close()


def served(domain: str, port: int, internal_root: str) -> str:
    """What the proxy serves for `domain` right now: acme, internal or none."""
    try:
        _handshake(domain, port, None)
    except (OSError, ssl.SSLError):
        return "none"
    if os.path.isfile(internal_root):
        try:
            _handshake(domain, port, internal_root)
            return "internal"
        except ssl.SSLCertVerificationError:
            pass
        except (OSError, ssl.SSLError):
            return "none"
    return "acme"


def order_error(log_lines: list[str], domain: str) -> str:
    """The last error Caddy logged for the domain's order, on one line (at most 400 characters)."""
    reason = ""
    for line in log_lines:
        if ORDER_FAILED in line and "{" in line:
            try:
                entry = json.loads(line[line.index("{") :])
            except ValueError:
                continue
            if entry.get("identifier") == domain:
                reason = str(entry.get("error", ""))
    return " ".join(reason.split())[:400]


def check(
    settings: Settings,
    *,
    look: Callable[[], str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    stack = Stack(settings)
    config = stack.settings
    if look is None:
        root = os.path.join(stack.docker.volume_path("proxy_data"), config.proxy_ca_root)

        def look() -> str:
            return served(config.domain, config.https_port, root)

    deadline = clock() + config.acme_wait
    state = look()
    while state == "none" and clock() < deadline:
        sleep(2)
        state = look()
    reason = ""
    if state != "acme":
        reason = order_error(stack.docker.logs(settings.layout.services["proxy"], 300), config.domain)
    return {"state": state, "reason": reason}
