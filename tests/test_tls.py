"""TLS with `shuttle launch`: ACME from a real ACME server (Pebble), the fallback when it is down, and grading.

Pebble (Debian's `pebble` package) runs on this machine, listening on the test network's gateway address, which
the test host and the Caddy container nested in it reach through the host's NAT. Debian's package ships no test
certificates, so the fixture makes Pebble's HTTPS CA and certificate itself; that CA is the config's `acme.ca_root`.
`PEBBLE_VA_ALWAYS_VALID=1` skips challenge validation (the test domains resolve nowhere), and Pebble issues
90-day certificates as Let's Encrypt does (its default, 5 years, is longer than Mozilla's profiles allow).

Three copies of the session's launched host are launched again in one run of the real CLI (`shuttle launch
-i --json`), each with its own `shuttle_settings`:
1. acme, with Pebble up and domain emr.shuttle.test: the served certificate must chain to Pebble's issuing CA;
2. fallback, with an ACME directory whose port refuses connections and domain down.shuttle.test, so Caddy must
   order a certificate that cannot be had: the launch succeeds, HTTPS answers with a certificate from Caddy's
   internal CA, and the summary carries the ACME warning; another launch (plain output) prints it again and
   changes nothing;
3. provided, with a certificate and key made here: that certificate is served, its key root-only.

sslyze's `--mozilla_config=intermediate` also validates the certificate path against its trust stores; neither
Pebble's root nor Caddy's internal root is publicly trusted, so each scan is given the root that issued the
endpoint's certificate (`--certinfo_ca_file`). Every other part of the check (TLS versions, cipher suites, curves,
key types and sizes, signature algorithms, certificate lifespan, known vulnerabilities) runs unchanged.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests import sites
from tests.conftest import LAYOUT, Run, boot_copy, host_vars_for_tests, inventory, run_shuttle
from tests.harness import hosts

pytestmark = pytest.mark.hosts

DOMAIN = "emr.shuttle.test"
DOWN_DOMAIN = "down.shuttle.test"
#: Caddy's internal CA root, in the proxy's data volume on the host.
CADDY_ROOT = "$(docker volume inspect -f '{{.Mountpoint}}' shuttle_caddy-data)/caddy/pki/authorities/local/root.crt"
#: Pebble's certificate validity: 90 days, as Let's Encrypt's.
PEBBLE_VALIDITY = 90 * 24 * 3600


def _free_port(address: str) -> int:
    """A port nothing listens on now; whoever binds it next may race us, so the caller retries on failure."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _https_ca(directory: Path, address: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for `address`: what Pebble serves its API with (its test "minica")."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Shuttle test Pebble HTTPS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),  # keyCertSign, cRLSign
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "pebble-https-ca.pem", directory / "pebble-https-cert.pem", directory / "pebble-https-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@dataclass
class Pebble:
    """Pebble on this machine, on the test network's gateway address."""

    address: str
    port: int
    management_port: int
    https_ca: Path
    process: subprocess.Popen
    log: Path

    @property
    def directory_url(self) -> str:
        return f"https://{self.address}:{self.port}/dir"

    def get(self, path: str) -> str:
        """GET from the management API (its roots and intermediates change at every start)."""
        context = ssl.create_default_context(cafile=str(self.https_ca))
        conn = http.client.HTTPSConnection(self.address, self.management_port, timeout=10, context=context)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
            assert response.status == 200, f"{path}: {response.status} {body}"
            return body
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_pebble(directory: Path) -> Pebble:
    """Pebble on two free ports; if another program took one of them first, on two others."""
    for attempt in range(3):
        try:
            return _start_pebble(directory)
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_pebble(directory: Path) -> Pebble:
    address = hosts.gateway(hosts.ensure_network())
    ca, cert, key = _https_ca(directory, address)
    port, management_port = _free_port(address), _free_port(address)
    config = directory / "pebble-config.json"
    config.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"{address}:{port}",
                    "managementListenAddress": f"{address}:{management_port}",
                    "certificate": str(cert),
                    "privateKey": str(key),
                    "httpPort": 80,
                    "tlsPort": 443,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                    "certificateValidityPeriod": PEBBLE_VALIDITY,
                }
            }
        )
    )
    log = directory / "pebble.log"
    env = {
        **os.environ,
        "PEBBLE_VA_ALWAYS_VALID": "1",  # the test domains resolve nowhere: authorizations are valid at once
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce rejections: this test is about TLS, not client retries
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["pebble", "-config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=directory
        )
    pebble = Pebble(address, port, management_port, ca, process, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            pebble.get("/roots/0")
            return pebble
        except (OSError, AssertionError):
            if process.poll() is not None or time.monotonic() > deadline:
                pebble.stop()
                raise RuntimeError("pebble did not start:\n" + log.read_text()[-3000:]) from None
            time.sleep(0.3)


def _acme_warnings(run: Run) -> list[str]:
    """The run's warnings about ACME (other roles may warn about other things)."""
    return [text for text in run.summary["warnings"] if "ACME" in text]


@dataclass
class Tls:
    """Three copies of the launched host, launched again in one run, each with its own TLS settings."""

    hosts: dict[str, hosts.TestHost]
    tmp: Path
    config: dict
    settings: dict[str, dict]
    run: Run
    pebble_root: str
    pebble_intermediate: str
    provided_key: Path

    def inventory(self, *names: str) -> Path:
        path = self.tmp / f"inventory-{'-'.join(names)}.yml"
        inventory(path, {name: self.hosts[name] for name in names}, self.tmp, **host_vars_for_tests())
        data = yaml.safe_load(path.read_text())
        for name in names:
            data["all"]["hosts"][name]["shuttle_settings"] = self.settings[name]
        path.write_text(yaml.safe_dump(data))
        return path


def _provided_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "provided-cert.pem", directory / "provided-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=provided.example.org",
         "-addext", "subjectAltName=DNS:provided.example.org"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@sites.job("tls", needs=("launched",), weight=4)
def build_tls(session: sites.Session) -> Tls:
    """acme: Pebble up, domain emr.shuttle.test. fallback: an ACME directory whose port refuses connections
    (bound, never listened on), domain down.shuttle.test. provided: a certificate made here."""
    launched = session.get("launched")
    tmp = session.tmp("tls")
    pebble = start_pebble(tmp)
    session.resources["pebble"] = pebble
    held = socket.socket()
    held.bind((pebble.address, 0))
    session.resources["tls-closed-port"] = held
    cert, key = _provided_certificate(tmp)
    email = "admin@shuttle.test"
    settings = {
        "acme": {"domain": DOMAIN, "tls": {"mode": "acme"},
                 "acme": {"email": email, "directory_url": pebble.directory_url, "ca_root": str(pebble.https_ca)}},
        "fallback": {"domain": DOWN_DOMAIN, "tls": {"mode": "acme"},
                     "acme": {"email": email, "directory_url": f"https://{pebble.address}:{held.getsockname()[1]}/dir"}},
        "provided": {"tls": {"mode": "provided", "cert_path": str(cert), "key_path": str(key)}},
    }  # fmt: skip
    copies = {name: boot_copy(session, launched.snapshot) for name in settings}
    state = Tls(copies, tmp, launched.config, settings, Run(0, "", ""), pebble.get("/roots/0"),
                pebble.get("/intermediates/0"), key)  # fmt: skip
    state.run = run_shuttle("launch", "-i", str(state.inventory(*settings)), "--json", config=state.config, tmp=tmp)
    assert state.run.returncode == 0, state.run.explain()
    return state


@pytest.fixture(scope="module")
def tls(session: sites.Session) -> Iterator[Tls]:
    yield session.get("tls")
    session.release("tls")


def _warnings_for(run: Run, name: str) -> list[str]:
    return [text for text in _acme_warnings(run) if text.startswith(f"{name}: ")]


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
    """GET https://DOMAIN/PATH from the host's address, the certificate verified against `cadata`."""
    context = ssl.create_default_context(cadata=cadata)
    conn = http.client.HTTPSConnection(domain, 443, timeout=20, context=context)
    conn.sock = context.wrap_socket(socket.create_connection((ip, 443), timeout=20), server_hostname=domain)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _sslyze(ip: str, domain: str, ca_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sslyze", "--mozilla_config=intermediate", "--certinfo_ca_file", str(ca_file),
         f"{domain}:443{{{ip}}}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


# Stage 1: Pebble up.


def test_acme_certificate_chains_to_pebbles_issuing_ca(tls: Tls) -> None:
    assert _warnings_for(tls.run, "acme") == [], tls.run.summary["warnings"]
    intermediate = x509.load_pem_x509_certificate(tls.pebble_intermediate.encode())
    # A handshake that verifies against Pebble's root (and the name), then the leaf checked against the intermediate.
    leaf = _served(tls.hosts["acme"].ip, DOMAIN, cadata=tls.pebble_root)
    assert leaf.issuer == intermediate.subject
    assert "Pebble Intermediate CA" in intermediate.subject.rfc4514_string()
    leaf.verify_directly_issued_by(intermediate)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [DOMAIN]


def test_app_answers_on_the_acme_certificate(tls: Tls) -> None:
    response = _get(tls.hosts["acme"].ip, DOMAIN, "/interface/login/login.php", tls.pebble_root)
    assert response.status == 200
    assert int(response.getheader("Strict-Transport-Security", "").split("max-age=")[1].split(";")[0]) >= 31536000


def test_sslyze_mozilla_intermediate_on_the_acme_certificate(tls: Tls) -> None:
    root = tls.tmp / "pebble-root.pem"
    root.write_text(tls.pebble_root)
    scan = _sslyze(tls.hosts["acme"].ip, DOMAIN, root)
    assert scan.returncode == 0 and "OK - Compliant" in scan.stdout, scan.stdout[-4000:] + scan.stderr[-2000:]


# Stage 2: the ACME directory refuses connections.


def test_launch_succeeds_and_warns_when_the_acme_ca_is_down(tls: Tls) -> None:
    warnings = _warnings_for(tls.run, "fallback")
    assert len(warnings) == 1, warnings
    assert f"ACME order for {DOWN_DOMAIN} failed; serving a self-signed certificate" in warnings[0]
    assert "Caddy retries automatically" in warnings[0]
    # The reason Caddy logged: the directory's port refuses connections.
    assert "connection refused" in warnings[0], warnings[0]


def test_app_answers_on_the_internal_certificate(tls: Tls) -> None:
    host = tls.hosts["fallback"]
    root = host.exec(f"cat {CADDY_ROOT}", check=True).stdout
    leaf = _served(host.ip, DOWN_DOMAIN, cadata=root)
    assert "Caddy Local Authority" in leaf.issuer.rfc4514_string()
    assert _get(host.ip, DOWN_DOMAIN, "/interface/login/login.php", root).status == 200


def test_sslyze_mozilla_intermediate_on_the_internal_certificate(tls: Tls) -> None:
    host = tls.hosts["fallback"]
    root = tls.tmp / "caddy-root.pem"
    root.write_text(host.exec(f"cat {CADDY_ROOT}", check=True).stdout)
    scan = _sslyze(host.ip, DOWN_DOMAIN, root)
    assert scan.returncode == 0 and "OK - Compliant" in scan.stdout, scan.stdout[-4000:] + scan.stderr[-2000:]


def test_rerun_prints_the_warning_and_changes_nothing(tls: Tls) -> None:
    before = set((tls.tmp / "logs").glob("*-launch-*.log"))
    # Plain output, as an admin's shell without a terminal shows it.
    run = run_shuttle(
        "launch", "-i", str(tls.inventory("fallback")), config=tls.config, tmp=tls.tmp, env={"COLUMNS": "400"}
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    text = " ".join(run.stdout.split())
    warning = rf"warning: \S+: ACME order for {re.escape(DOWN_DOMAIN)} failed; serving a self-signed"
    assert re.search(warning, text), text[-3000:]
    (log,) = set((tls.tmp / "logs").glob("*-launch-*.log")) - before
    summary = [line for line in log.read_text().splitlines() if " summary " in line]
    assert len(summary) == 1 and " changed=0 " in summary[0], summary


# The provided certificate.


def test_a_provided_certificate_is_served_and_its_key_kept_root_only(tls: Tls) -> None:
    host = tls.hosts["provided"]
    leaf = _served(host.ip, "provided.example.org")
    assert "provided.example.org" in leaf.subject.rfc4514_string()
    key_mode = host.exec(f"stat -c '%a %U' {LAYOUT['compose_dir']}/caddy/tls/key.pem", check=True).stdout.split()
    assert key_mode == ["600", "root"]
    key_line = tls.provided_key.read_text().split("\n")[1]
    assert key_line not in tls.run.stdout + tls.run.stderr, "the private key reached the output"
