"""The session's fleet: a hosting provider's four customers launched from one inventory in one run, each with its
own settings (`shuttle_settings`), and an unreachable fifth host. Read by test_fleet (the fleet itself) and by
test_tls (each customer has its own TLS setup), so one launch of four hosts serves both.

The four hosts are copies of the session's provisioned Debian 12 host (everything installed, nothing started,
no secret), so the run does what a fleet launch does on each host but install packages: its own secrets, its
own OpenEMR set up with its own admin, its own time zone, its own certificate.
"""

from __future__ import annotations

import copy
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests import sites
from tests.conftest import Run, boot_copies, run_shuttle, stack_config
from tests.harness import hosts
from tests.pebble import provided_certificate, start_pebble
from tests.standins import LOGIN_POST

#: A secret only the fleet knows (not conftest's SENTINEL: these inventories stay in the session's tmp dir,
#: where test_launch looks for that one).
SECRET = f"fleet-secret-{secrets.token_hex(8)}"
#: An S3 backup target is never contacted by a launch; its secret key must not leave the inventory.
S3_BACKUP = {
    "target": "s3:https://s3.example.org/clinic-berlin",
    "s3_access_key_id": "AKIASHUTTLEFLEET",
    "s3_secret_access_key": SECRET,
}
#: The customer whose certificate comes from Pebble, over ACME.
ACME = "clinic-chicago"
#: The customer whose ACME directory refuses connections (a port bound, never listened on): Caddy's internal CA
#: serves until the order succeeds.
FALLBACK = "clinic-berlin"
#: The customer who brings a certificate of its own.
PROVIDED = "clinic-tokyo"
DOMAIN = "emr.shuttle.test"
DOWN_DOMAIN = "down.shuttle.test"
PROVIDED_DOMAIN = "provided.example.org"
#: One customer per host, each with its own administrator login and time zone; one has an S3 backup target; the
#: fourth has no domain (certificates from Caddy's internal CA). The TLS settings join these when the job runs.
CUSTOMERS = {
    ACME: {"admin_user": "drsmith", "timezone": "America/Chicago"},
    FALLBACK: {"admin_user": "praxis.weber", "timezone": "Europe/Berlin", "backup": S3_BACKUP},
    PROVIDED: {"admin_user": "tanaka_it", "timezone": "Asia/Tokyo"},
    "clinic-sydney": {"admin_user": "ops-admin", "timezone": "Australia/Sydney"},
}
#: The host launched a second time, alone and in plain output: a converged Debian 12 host changes nothing, and
#: the ACME warning is printed again.
RERUN = FALLBACK
#: The name each customer's site answers to (None: any name or address).
SITE_NAMES = {ACME: DOMAIN, FALLBACK: DOWN_DOMAIN, PROVIDED: None, "clinic-sydney": None}


@dataclass
class Fleet:
    hosts: dict[str, hosts.TestHost]
    tmp: Path
    #: The four customers, no unreachable host, for the API's runs.
    inventory: Path
    config: Path
    #: Each customer's `shuttle_settings`, TLS included.
    settings: dict[str, dict]
    #: The launch of the four and the unreachable fifth (`--json`); the second launch of RERUN alone (plain).
    run: Run
    rerun: Run
    #: Pebble's root and intermediate (they change at every start of Pebble).
    pebble_root: str
    pebble_intermediate: str
    provided_key: Path


def write_inventory(path: Path, fleet: dict[str, hosts.TestHost], settings: dict[str, dict], tmp: Path,
                    extra: dict | None = None) -> Path:  # fmt: skip
    """A provider's inventory: shared connection settings in `all.vars`, one host per customer."""
    clinics = {
        name: {"ansible_port": host.ssh_port, "shuttle_settings": settings[name]} for name, host in fleet.items()
    }
    key = next(iter(fleet.values())).key
    inventory = {
        "all": {
            "vars": {
                "ansible_host": "127.0.0.1",
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={tmp / 'known_hosts'}",
            },
            "children": {"clinics": {"hosts": clinics}},
            "hosts": extra or {},
        }
    }
    path.write_text(yaml.safe_dump(inventory))
    return path


@sites.job("fleet", needs=("provisioned",), weight=7)
def build_fleet(session: sites.Session) -> Fleet:
    """Four copies of the provisioned host and a fifth host whose SSH port refuses connections, launched with one
    `shuttle launch -i --forks 5 --json` run; then the fallback customer launched again alone, in plain output."""
    snapshot = session.get("provisioned").snapshot
    fleet_hosts = boot_copies(session, snapshot, CUSTOMERS, stack=False)
    tmp = session.tmp("fleet")
    pebble = start_pebble(tmp)
    session.resources["pebble"] = pebble
    refused = {}
    for purpose, address in (("ssh", "127.0.0.1"), ("acme", pebble.address)):
        held = socket.socket()
        held.bind((address, 0))
        session.resources[f"fleet-closed-{purpose}-port"] = held
        refused[purpose] = held.getsockname()[1]
    cert, key = provided_certificate(tmp)
    email = "admin@shuttle.test"
    tls = {
        ACME: {"domain": DOMAIN, "tls": {"mode": "acme"},
               "acme": {"email": email, "directory_url": pebble.directory_url, "ca_root": str(pebble.https_ca)}},
        FALLBACK: {"domain": DOWN_DOMAIN, "tls": {"mode": "acme"},
                   "acme": {"email": email, "directory_url": f"https://{pebble.address}:{refused['acme']}/dir"}},
        PROVIDED: {"tls": {"mode": "provided", "cert_path": str(cert), "key_path": str(key)}},
    }  # fmt: skip
    settings = {name: {**copy.deepcopy(wanted), **tls.get(name, {})} for name, wanted in CUSTOMERS.items()}
    gone = {"clinic-gone": {"ansible_port": refused["ssh"], "shuttle_settings": {"timezone": "Europe/Paris"}}}
    inventory = write_inventory(tmp / "customers.yml", fleet_hosts, settings, tmp)
    with_gone = write_inventory(tmp / "customers-plus-one.yml", fleet_hosts, settings, tmp, extra=gone)
    config = tmp / "shuttle.yml"
    config.write_text(yaml.safe_dump(stack_config()))
    run = run_shuttle(
        "launch", "-i", str(with_gone), "--config", str(config), "--json", "--forks", "5", tmp=tmp, timeout=2400
    )
    one = write_inventory(tmp / "one.yml", {RERUN: fleet_hosts[RERUN]}, settings, tmp)
    # Plain output, as an admin's shell without a terminal shows it.
    rerun = run_shuttle("launch", "-i", str(one), "--config", str(config), tmp=tmp, env={"COLUMNS": "400"})
    return Fleet(fleet_hosts, tmp, inventory, config, settings, run, rerun, pebble.get("/roots/0"),
                 pebble.get("/intermediates/0"), key)  # fmt: skip


@pytest.fixture(scope="module", name="fleet")
def fleet_fixture(session: sites.Session) -> Fleet:
    """The `fleet` fixture of the modules that import it."""
    return session.get("fleet")


def launched_all(fleet: Fleet) -> None:
    """The fleet's run launched all four customers (what every test of the fleet builds on)."""
    results = fleet.run.summary["hosts"]
    assert all(results[name]["status"] == "ok" for name in CUSTOMERS), fleet.run.explain()


def login(fleet: Fleet, name: str, user: str, password: str) -> requests.Response:
    """The OpenEMR login form of customer `name`, posted over HTTPS as a browser does (a site with a domain is
    asked for by that name; the certificate is not checked here, test_tls does)."""
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify=False
    session.verify = False
    site = SITE_NAMES[name]
    headers = {"Host": site} if site else {}
    form = {"new_login_session_management": "1", "authUser": user, "clearPass": password}
    url = f"https://{fleet.hosts[name].ip}{LOGIN_POST}"
    return session.post(url, data=form, headers=headers, allow_redirects=False, timeout=30)
