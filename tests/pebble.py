"""Pebble, a real ACME server (Debian's `pebble` package), on this machine for the TLS tests; and a certificate a
clinic would provide itself.

Pebble listens on the test network's gateway address, which a test host and the Caddy container nested in it
reach through the host's NAT. Debian's package ships no test certificates, so this module makes Pebble's HTTPS CA
and certificate itself; that CA is what a config's `acme.ca_root` names. `PEBBLE_VA_ALWAYS_VALID=1` skips
challenge validation (the test domains resolve nowhere), and Pebble issues 90-day certificates as Let's Encrypt
does (its default, 5 years, is longer than Mozilla's profiles allow).
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness import hosts

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


def provided_certificate(directory: Path, days: int = 30) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "provided-cert.pem", directory / "provided-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", "/CN=provided.example.org",
         "-addext", "subjectAltName=DNS:provided.example.org"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
