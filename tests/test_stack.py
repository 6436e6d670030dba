"""The docker and stack roles on a real Debian 13 test host, with the stand-in images bundle.

The host is checked from other test hosts on the same network, as a browser would see it: HTTPS login
page, the admin's login with the password read from the host, HTTP redirect, HSTS, and a ban at the
firewall after repeated failed logins while another client is still served. A second converge must
change nothing and recreate no container, and broken image references must fail fast with a message
that names the service.

Every converge is a real `shuttle launch --json`; the module's main host is the session's shared
launched host (tests/conftest.py), so its first launch is paid once for the whole suite.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import SENTINEL_CONFIG, Launched, Run, launch
from tests.conftest import stack_config as base_stack_config
from tests.harness import hosts
from tests.standins import IMAGES
from tests.webclient import Client

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[1]
ROLES = ("preflight", "docker", "stack")
SECRETS_DIR = "/etc/shuttle/secrets"
SECRET_NAMES = ("db-root-password", "db-password", "openemr-admin-password")
COMPOSE_DIR = "/opt/shuttle/compose"


def converge(host: hosts.TestHost, config: dict, *, tmp: Path, check: bool = False) -> Run:
    return launch(host, config, *(["--check"] if check else []), tmp=tmp)


def stack_config(**overrides: object) -> dict:
    return base_stack_config(admin_user="admin", **overrides)


def request(ip: str, method: str, path: str, *, tls: bool = True, body: str | None = None) -> http.client.HTTPResponse:
    """One request straight to the host's address (no SNI, no redirects followed), as `curl -k` does."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(ip, 443, timeout=20, context=context)
    else:
        conn = http.client.HTTPConnection(ip, 80, timeout=20)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


@dataclass
class Clients:
    browser: Client
    attacker: Client


@pytest.fixture(scope="module")
def clients(host_factory) -> Clients:
    return Clients(Client(host_factory("debian13")), Client(host_factory("debian13")))


def containers(host: hosts.TestHost) -> dict[str, tuple[str, str]]:
    """Compose service -> (container id, StartedAt) for the shuttle project."""
    out = host.exec(
        "docker ps -aq --filter label=com.docker.compose.project=shuttle | xargs -r docker inspect --format "
        "'{{index .Config.Labels \"com.docker.compose.service\"}} {{.Id}} {{.State.StartedAt}}'",
        check=True,
    ).stdout
    return {service: (cid, started) for service, cid, started in (line.split() for line in out.splitlines())}


@dataclass
class Converged:
    host: hosts.TestHost
    tmp: Path
    config: dict
    runs: list[Run] = field(default_factory=list)

    def converge(self, config: dict | None = None, *, check: bool = False) -> Run:
        run = converge(self.host, self.config if config is None else config, tmp=self.tmp, check=check)
        self.runs.append(run)
        return run

    def secrets(self) -> dict[str, str]:
        out = {}
        for name in SECRET_NAMES:
            out[name] = self.host.exec(f"cat {SECRETS_DIR}/{name}", check=True).stdout.strip()
        return out


@pytest.fixture(scope="module")
def full(launched: Launched) -> Converged:
    return Converged(launched.host, launched.tmp, stack_config(**SENTINEL_CONFIG), runs=[launched.run])


@pytest.fixture(scope="module")
def empty(host_factory, tmp_path_factory) -> Converged:
    state = Converged(host_factory("debian13"), tmp_path_factory.mktemp("empty"), stack_config(mode="empty"))
    check = state.converge(check=True)
    assert check.returncode == 0, "--check on a fresh host failed:\n" + check.explain()
    run = state.converge()
    assert run.returncode == 0, run.explain()
    return state


def test_https_serves_the_login_page(full: Converged, clients: Clients) -> None:
    response = clients.browser.request(full.host.ip, "GET", "/interface/login/login.php")
    assert response.get("status") == 200, response
    assert "authUser" in response["body"]


def test_admin_logs_in_with_the_generated_password(full: Converged, clients: Clients) -> None:
    password = full.secrets()["openemr-admin-password"]
    assert len(password) >= 24
    ok = clients.browser.login(full.host.ip, "admin", password)
    assert (ok.get("status"), ok["headers"].get("Location")) == (302, "/interface/main/main.php"), ok
    wrong = clients.browser.login(full.host.ip, "admin", "not-it")
    assert wrong.get("status") == 200 and "login.php?error=1" in wrong["body"], wrong


def test_http_redirects_to_https(full: Converged, clients: Clients) -> None:
    response = clients.browser.request(full.host.ip, "GET", "/interface/login/login.php", tls=False)
    assert response.get("status") in (301, 302, 307, 308), response
    assert response["headers"].get("Location", "").startswith(f"https://{full.host.ip}/")


def test_hsts_is_sent(full: Converged, clients: Clients) -> None:
    header = clients.browser.request(full.host.ip, "GET", "/")["headers"].get("Strict-Transport-Security", "")
    max_age = re.search(r"max-age=(\d+)", header)
    assert max_age and int(max_age.group(1)) >= 31536000, header


def test_failed_logins_get_the_client_banned(full: Converged, clients: Clients) -> None:
    """10 failed logins from one host: fail2ban reads them in the proxy's log and drops that host's
    HTTP(S) before Docker's NAT, while another host is still served."""
    ip, attacker = full.host.ip, clients.attacker
    assert attacker.request(ip, "GET", "/interface/login/login.php").get("status") == 200
    try:
        for _ in range(10):
            failed = attacker.login(ip, "admin", "guessing")
            assert failed.get("status") == 200 and "error=1" in failed["body"], failed
        deadline = time.monotonic() + 30
        while attacker.host.ip not in full.host.exec("fail2ban-client status shuttle-openemr").stdout:
            assert time.monotonic() < deadline, full.host.exec("fail2ban-client status shuttle-openemr").stdout
            time.sleep(1)
        after = attacker.request(ip, "GET", "/interface/login/login.php")
        assert "error" in after, f"a banned host still got an answer: {after.get('status')}"
        assert clients.browser.request(ip, "GET", "/interface/login/login.php").get("status") == 200
    finally:
        full.host.exec(f"fail2ban-client set shuttle-openemr unbanip {attacker.host.ip}")
    assert attacker.request(ip, "GET", "/interface/login/login.php").get("status") == 200


def test_the_app_is_configured_with_its_admin(full: Converged) -> None:
    status = json.loads(request(full.host.ip, "GET", "/status.php").body)  # type: ignore[attr-defined]
    assert status["configured"] is True and status["admin_exists"] is True


def test_only_the_proxy_publishes_ports(full: Converged) -> None:
    out = full.host.exec(
        "docker ps --filter label=com.docker.compose.project=shuttle --format "
        "'{{.Label \"com.docker.compose.service\"}} {{.Ports}}'",
        check=True,
    ).stdout
    published = {line.split()[0]: "->" in line for line in out.splitlines()}
    assert published == {"db": False, "app": False, "proxy": True}


def test_secrets_and_env_file_are_root_only(full: Converged) -> None:
    paths = [f"{SECRETS_DIR}/{name}" for name in SECRET_NAMES] + [f"{COMPOSE_DIR}/.env"]
    out = full.host.exec("stat -c '%a %U %n' " + " ".join(paths), check=True).stdout
    for line in out.splitlines():
        assert line.startswith("600 root "), line
    assert full.host.exec(f"stat -c '%a' {SECRETS_DIR}", check=True).stdout.strip() == "700"


def test_access_log_is_json_on_the_host(full: Converged) -> None:
    request(full.host.ip, "GET", "/interface/login/login.php")
    lines = full.host.exec("tail -n 5 /var/log/shuttle/caddy/access.log", check=True).stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert any(e.get("request", {}).get("uri") == "/interface/login/login.php" for e in entries)


def test_daemon_json_is_in_force(full: Converged) -> None:
    info = full.host.exec("docker info --format '{{.LoggingDriver}} {{.LiveRestoreEnabled}}'", check=True).stdout
    assert info.split() == ["json-file", "true"]
    nnp = full.host.exec("docker exec shuttle-app-1 grep NoNewPrivs /proc/1/status", check=True).stdout
    assert nnp.split() == ["NoNewPrivs:", "1"]


def test_second_converge_changes_nothing(full: Converged) -> None:
    before = containers(full.host)
    run = full.converge()
    assert run.returncode == 0, run.explain()
    assert run.host["changed"] == 0, [e for e in run.events if e.get("status") == "changed"]
    assert containers(full.host) == before


def test_check_mode_on_the_converged_host_changes_nothing(full: Converged) -> None:
    run = full.converge(check=True)
    assert run.returncode == 0, run.explain()
    assert run.host["changed"] == 0


def test_the_run_says_where_the_password_is(full: Converged) -> None:
    assert any(f"{SECRETS_DIR}/openemr-admin-password" in text for text in full.runs[0].summary["notices"])


def test_no_generated_secret_in_the_output(full: Converged) -> None:
    secrets = full.secrets()
    for run in full.runs:
        for name, value in secrets.items():
            assert value not in run.stdout and value not in run.stderr, f"{name} appears in ansible's output"


# These two leave the host's stack broken: they run last on this module's host.


def _launch_broken(full: Converged, openemr_image: str) -> str:
    """Launch with a broken app image; the run must fail within a bounded time. Returns its failure messages."""
    started = time.monotonic()
    run = full.converge(stack_config(**SENTINEL_CONFIG, images={**IMAGES, "openemr": openemr_image}))
    elapsed = time.monotonic() - started
    assert run.returncode != 0
    assert elapsed < 180, f"took {elapsed:.0f}s"
    return run.failures


def test_an_image_missing_everywhere_fails_fast_naming_the_service(full: Converged) -> None:
    message = _launch_broken(full, "shuttle-standin/openemr:0.0-not-anywhere")
    assert "service app" in message and "shuttle-standin/openemr:0.0-not-anywhere" in message, message
    assert "could not be pulled" in message, message


def test_an_image_that_does_not_start_fails_fast_with_its_logs(full: Converged) -> None:
    # The database image in the app's place: it exits at once (no MARIADB_ROOT_PASSWORD) and restarts in a loop.
    message = _launch_broken(full, IMAGES["mariadb"])
    assert "service app is" in message, message
    assert "log lines" in message and "password option is not specified" in message, message


def test_empty_mode_starts_an_unconfigured_app(empty: Converged) -> None:
    status = json.loads(request(empty.host.ip, "GET", "/status.php").body)  # type: ignore[attr-defined]
    assert status["configured"] is False
    assert status["admin_exists"] is False
    assert request(empty.host.ip, "GET", "/interface/login/login.php", tls=False).status in (301, 308)


def _served_certificate(ip: str) -> dict:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((ip, 443), timeout=20) as sock, context.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-issuer"], input=pem, capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_a_provided_certificate_is_served(empty: Converged, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=provided.example.org",
         "-addext", "subjectAltName=DNS:provided.example.org"],
        check=True, capture_output=True,
    )  # fmt: skip
    config = stack_config(mode="empty", tls={"mode": "provided", "cert_path": str(cert), "key_path": str(key)})
    run = empty.converge(config)
    assert run.returncode == 0, run.explain()
    assert "provided.example.org" in _served_certificate(empty.host.ip)["subject"]
    key_mode = empty.host.exec(f"stat -c '%a %U' {COMPOSE_DIR}/caddy/tls/key.pem", check=True).stdout.split()
    assert key_mode == ["600", "root"]


def test_a_failed_acme_order_keeps_https_up(empty: Converged) -> None:
    # Nothing listens at this directory URL: the order fails and Caddy's internal CA stands in.
    config = stack_config(
        mode="empty",
        domain="emr.example.org",
        tls={"mode": "acme"},
        acme={"email": "admin@example.org", "directory_url": "https://127.0.0.1:9/dir"},
    )
    run = empty.converge(config)
    assert run.returncode == 0, run.explain()
    deadline = time.monotonic() + 60
    while True:
        try:
            issuer = _served_certificate(empty.host.ip)["issuer"]
            break
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    assert "Caddy Local Authority" in issuer
    assert request(empty.host.ip, "GET", "/interface/login/login.php").status in (200, 302)


def test_empty_mode_output_has_no_secret(empty: Converged) -> None:
    secrets = empty.secrets()
    for run in empty.runs:
        for name, value in secrets.items():
            assert value not in run.stdout, f"{name} appears in ansible's output"
