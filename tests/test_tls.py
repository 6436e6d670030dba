"""TLS with `shuttle launch`: ACME from a real ACME server (Pebble, tests/pebble.py), the fallback when it is
down, a certificate the clinic provides, and grading.

The session's fleet (tests/fleet.py) gives each customer its own TLS settings, launched in one run of the real CLI
(`shuttle launch -i --json`):
1. acme (clinic-chicago), with Pebble up and domain emr.shuttle.test: the served certificate must chain to
   Pebble's issuing CA;
2. fallback (clinic-berlin), with an ACME directory whose port refuses connections and domain down.shuttle.test,
   so Caddy must order a certificate that cannot be had: the launch succeeds, HTTPS answers with a certificate
   from Caddy's internal CA, and the summary carries the ACME warning; its second launch (plain output) prints
   it again and changes nothing;
3. provided (clinic-tokyo), with a certificate and key made here: that certificate is served, its key root-only.

sslyze's `--mozilla_config=intermediate` also validates the certificate path against its trust stores; neither
Pebble's root nor Caddy's internal root is publicly trusted, so each scan is given the root that issued the
endpoint's certificate (`--certinfo_ca_file`). Every other part of the check (TLS versions, cipher suites, curves,
key types and sizes, signature algorithms, certificate lifespan, known vulnerabilities) runs unchanged.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import LAYOUT, Run
from tests.fleet import (  # noqa: F401 (fleet_fixture: the fixture)
    ACME,
    DOMAIN,
    DOWN_DOMAIN,
    FALLBACK,
    PROVIDED,
    PROVIDED_DOMAIN,
    Fleet,
    fleet_fixture,
)

pytestmark = pytest.mark.hosts

#: Caddy's internal CA root, in the proxy's data volume on the host.
CADDY_ROOT = "$(docker volume inspect -f '{{.Mountpoint}}' shuttle_caddy-data)/caddy/pki/authorities/local/root.crt"


def _warnings_for(run: Run, name: str) -> list[str]:
    """The run's warnings about ACME for host `name` (other roles may warn about other things)."""
    return [text for text in run.summary["warnings"] if "ACME" in text and text.startswith(f"{name}: ")]


def _handshake(ip: str, domain: str, cadata: str | None = None) -> bytes:
    """The leaf certificate (DER) served for SNI `domain`; verified against `cadata` (hostname too) when given."""
    context = ssl.create_default_context(cadata=cadata)
    if cadata is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((ip, 443), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=domain) as conn,
    ):
        return conn.getpeercert(binary_form=True)


def _served(ip: str, domain: str, cadata: str | None = None, wait: float = 30) -> x509.Certificate:
    deadline = time.monotonic() + wait
    while True:
        try:
            return x509.load_der_x509_certificate(_handshake(ip, domain, cadata))
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _get(ip: str, domain: str, path: str, cadata: str) -> http.client.HTTPResponse:
    """GET https://DOMAIN/PATH from the host's address, the certificate verified against `cadata`; the body is
    in the response's `body`."""
    context = ssl.create_default_context(cadata=cadata)
    conn = http.client.HTTPSConnection(domain, 443, timeout=20, context=context)
    conn.sock = context.wrap_socket(socket.create_connection((ip, 443), timeout=20), server_hostname=domain)
    conn.request("GET", path)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def _sslyze(ip: str, domain: str, ca_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sslyze", "--mozilla_config=intermediate", "--certinfo_ca_file", str(ca_file),
         f"{domain}:443{{{ip}}}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


# Stage 1: Pebble up.


def test_acme_certificate_chains_to_pebbles_issuing_ca(fleet: Fleet) -> None:
    assert _warnings_for(fleet.run, ACME) == [], fleet.run.summary["warnings"]
    intermediate = x509.load_pem_x509_certificate(fleet.pebble_intermediate.encode())
    # A handshake that verifies against Pebble's root (and the name), then the leaf checked against the intermediate.
    leaf = _served(fleet.hosts[ACME].ip, DOMAIN, cadata=fleet.pebble_root)
    assert leaf.issuer == intermediate.subject
    assert "Pebble Intermediate CA" in intermediate.subject.rfc4514_string()
    leaf.verify_directly_issued_by(intermediate)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [DOMAIN]


def test_app_answers_on_the_acme_certificate(fleet: Fleet) -> None:
    response = _get(fleet.hosts[ACME].ip, DOMAIN, "/interface/login/login.php", fleet.pebble_root)
    assert response.status == 200
    assert int(response.getheader("Strict-Transport-Security", "").split("max-age=")[1].split(";")[0]) >= 31536000


def test_openemr_writes_its_https_address_into_its_own_urls(fleet: Fleet) -> None:
    """Behind the proxy OpenEMR talks plain http and would build its OAuth2 issuer (the base of its FHIR, SMART
    and portal URLs) as http://; told its address, it writes the https one users open."""
    response = _get(fleet.hosts[ACME].ip, DOMAIN, "/oauth2/default/.well-known/openid-configuration", fleet.pebble_root)
    document = json.loads(response.body)  # type: ignore[attr-defined]
    assert response.status == 200 and document["issuer"] == f"https://{DOMAIN}/oauth2/default", document
    assert document["token_endpoint"].startswith(f"https://{DOMAIN}/"), document


def test_sslyze_mozilla_intermediate_on_the_acme_certificate(fleet: Fleet) -> None:
    root = fleet.tmp / "pebble-root.pem"
    root.write_text(fleet.pebble_root)
    scan = _sslyze(fleet.hosts[ACME].ip, DOMAIN, root)
    assert scan.returncode == 0 and "OK - Compliant" in scan.stdout, scan.stdout[-4000:] + scan.stderr[-2000:]


# Stage 2: the ACME directory refuses connections.


def test_launch_succeeds_and_warns_when_the_acme_ca_is_down(fleet: Fleet) -> None:
    warnings = _warnings_for(fleet.run, FALLBACK)
    assert len(warnings) == 1, warnings
    assert f"ACME order for {DOWN_DOMAIN} failed; serving a self-signed certificate" in warnings[0]
    assert "Caddy retries automatically" in warnings[0]
    # The reason Caddy logged: the directory's port refuses connections.
    assert "connection refused" in warnings[0], warnings[0]


def test_app_answers_on_the_internal_certificate(fleet: Fleet) -> None:
    host = fleet.hosts[FALLBACK]
    root = host.exec(f"cat {CADDY_ROOT}", check=True).stdout
    leaf = _served(host.ip, DOWN_DOMAIN, cadata=root)
    assert "Caddy Local Authority" in leaf.issuer.rfc4514_string()
    assert _get(host.ip, DOWN_DOMAIN, "/interface/login/login.php", root).status == 200


def test_sslyze_mozilla_intermediate_on_the_internal_certificate(fleet: Fleet) -> None:
    host = fleet.hosts[FALLBACK]
    root = fleet.tmp / "caddy-root.pem"
    root.write_text(host.exec(f"cat {CADDY_ROOT}", check=True).stdout)
    scan = _sslyze(host.ip, DOWN_DOMAIN, root)
    assert scan.returncode == 0 and "OK - Compliant" in scan.stdout, scan.stdout[-4000:] + scan.stderr[-2000:]


def test_a_second_launch_prints_the_warning_again(fleet: Fleet) -> None:
    """Plain output, as an admin's shell without a terminal shows it (that it changes nothing: test_fleet)."""
    assert fleet.rerun.returncode == 0, fleet.rerun.explain()
    text = " ".join(fleet.rerun.stdout.split())
    warning = rf"warning: {FALLBACK}: ACME order for {re.escape(DOWN_DOMAIN)} failed; serving a self-signed"
    assert re.search(warning, text), text[-3000:]


# The provided certificate.


def test_a_provided_certificate_is_served_and_its_key_kept_root_only(fleet: Fleet) -> None:
    host = fleet.hosts[PROVIDED]
    leaf = _served(host.ip, PROVIDED_DOMAIN)
    assert PROVIDED_DOMAIN in leaf.subject.rfc4514_string()
    key_mode = host.exec(f"stat -c '%a %U' {LAYOUT['compose_dir']}/caddy/tls/key.pem", check=True).stdout.split()
    assert key_mode == ["600", "root"]
    key_line = fleet.provided_key.read_text().split("\n")[1]
    assert key_line not in fleet.run.stdout + fleet.run.stderr, "the private key reached the output"
