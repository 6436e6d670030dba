"""The stack on a launched host, as a browser and an attacker on the network see it, and its failure modes.

Read-only checks run against the session's launched host from other test hosts: the HTTPS login page, the
admin's login with the password read from the host, the HTTP redirect, HSTS, only the proxy publishing ports,
root-only secrets, and fail2ban's OpenEMR jail (no ban after one failure too few, a ban at the threshold that
drops only that client). Broken images fail fast on copies of the launched host; empty mode is read on the
session's empty-mode Debian 12 host.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
from dataclasses import dataclass

import pytest
import yaml

from tests import sites
from tests.conftest import (
    LAYOUT,
    SECRETS_DIR,
    STACK_SECRETS,
    TIMEZONE,
    Empty,
    Launched,
    Run,
    boot_copies,
    host_vars_for_tests,
    inventory,
    run_shuttle,
    secret,
)
from tests.harness import hosts
from tests.standins import IMAGES
from tests.webclient import Client

pytestmark = pytest.mark.hosts

COMPOSE_DIR = LAYOUT["compose_dir"]
JAIL = "shuttle-openemr"
#: fail2ban_web_maxretry: failed logins within the find time that get an address banned.
MAX_FAILURES = 10


def request(ip: str, method: str, path: str, *, tls: bool = True) -> http.client.HTTPResponse:
    """One request straight to the host's address (no SNI, no redirects followed), as `curl -k` does."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(ip, 443, timeout=20, context=context)
    else:
        conn = http.client.HTTPConnection(ip, 80, timeout=20)
    conn.request(method, path)
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


def test_https_serves_the_login_page(launched: Launched, clients: Clients) -> None:
    response = clients.browser.request(launched.host.ip, "GET", "/interface/login/login.php")
    assert response.get("status") == 200, response
    assert "authUser" in response["body"]


def test_admin_logs_in_with_the_generated_password(launched: Launched, clients: Clients) -> None:
    password = secret(launched.host, "openemr-admin-password")
    assert len(password) >= 24
    ok = clients.browser.login(launched.host.ip, "admin", password)
    assert (ok.get("status"), ok["headers"].get("Location")) == (302, "/interface/main/main.php"), ok
    wrong = clients.browser.login(launched.host.ip, "admin", "not-it")
    assert wrong.get("status") == 200 and "login.php?error=1" in wrong["body"], wrong


def test_http_redirects_to_https(launched: Launched, clients: Clients) -> None:
    response = clients.browser.request(launched.host.ip, "GET", "/interface/login/login.php", tls=False)
    assert response.get("status") in (301, 302, 307, 308), response
    assert response["headers"].get("Location", "").startswith(f"https://{launched.host.ip}/")


def test_hsts_is_sent(launched: Launched, clients: Clients) -> None:
    header = clients.browser.request(launched.host.ip, "GET", "/")["headers"].get("Strict-Transport-Security", "")
    max_age = re.search(r"max-age=(\d+)", header)
    assert max_age and int(max_age.group(1)) >= 31536000, header


def test_pages_may_not_be_framed_by_other_sites_nor_sniffed(launched: Launched, clients: Clients) -> None:
    headers = clients.browser.request(launched.host.ip, "GET", "/interface/login/login.php")["headers"]
    assert headers.get("X-Frame-Options") == "SAMEORIGIN", headers
    assert headers.get("X-Content-Type-Options") == "nosniff", headers
    assert headers.get("Referrer-Policy") == "strict-origin-when-cross-origin", headers
    policy = dict(part.strip().split("=", 1) for part in headers.get("Permissions-Policy", "").split(","))
    assert policy.get("geolocation") == "()" and policy.get("camera") == "(self)", headers
    assert "Server" not in headers, headers


def banned(host: hosts.TestHost) -> set[str]:
    """The addresses the OpenEMR jail bans, exactly (not a substring of the status text)."""
    out = host.exec(f"fail2ban-client get {JAIL} banip").stdout
    return set(out.split())


def total_failed(host: hosts.TestHost) -> int:
    """Failed logins the jail has counted since it started (every client's)."""
    status = host.exec(f"fail2ban-client status {JAIL}").stdout
    match = re.search(r"Total failed:\s+(\d+)", status)
    assert match, status
    return int(match.group(1))


def wait_for(predicate, timeout: float, what: str) -> None:
    """Until `predicate()` holds; a generous deadline only bounds a broken run, it decides nothing."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(1)


def test_failed_logins_get_the_client_banned_at_the_threshold(launched: Launched, clients: Clients) -> None:
    """One failure short of the threshold bans nothing; the threshold bans the attacker before Docker's NAT,
    so its next HTTPS request gets no answer, while another host is still served."""
    ip, attacker, host = launched.host.ip, clients.attacker, launched.host
    assert attacker.request(ip, "GET", "/interface/login/login.php").get("status") == 200
    counted = total_failed(host)
    try:
        for _ in range(MAX_FAILURES - 1):
            failed = attacker.login(ip, "admin", "guessing")
            assert failed.get("status") == 200 and "error=1" in failed["body"], failed
        # Once fail2ban has counted every one of them, one failure short of the threshold has banned nothing.
        wait_for(lambda: total_failed(host) >= counted + MAX_FAILURES - 1, 120, "fail2ban to count the failures")
        assert attacker.host.ip not in banned(host)
        assert attacker.request(ip, "GET", "/interface/login/login.php").get("status") == 200
        attacker.login(ip, "admin", "guessing")
        wait_for(lambda: attacker.host.ip in banned(host), 120, f"fail2ban to ban {attacker.host.ip}")
        after = attacker.request(ip, "GET", "/interface/login/login.php")
        assert "error" in after, f"a banned host still got an answer: {after.get('status')}"
        assert clients.browser.request(ip, "GET", "/interface/login/login.php").get("status") == 200
        assert banned(host) == {attacker.host.ip}
    finally:
        host.exec(f"fail2ban-client set {JAIL} unbanip {attacker.host.ip}")
    assert attacker.request(ip, "GET", "/interface/login/login.php").get("status") == 200


def test_the_app_is_configured_with_its_admin(launched: Launched) -> None:
    status = json.loads(request(launched.host.ip, "GET", "/status.php").body)  # type: ignore[attr-defined]
    assert status["configured"] is True and status["admin_exists"] is True


def openemr_php(host: hosts.TestHost, body: str) -> str:
    """PHP run in the app container after OpenEMR's bootstrap (interface/globals.php), as its own CLI scripts run."""
    app = host.exec(
        f"docker ps -q --filter label=com.docker.compose.project={LAYOUT['project']}"
        f" --filter label=com.docker.compose.service={LAYOUT['services']['app']}",
        check=True,
    ).stdout.strip()
    script = (
        "<?php $_GET['site'] = 'default'; $ignoreAuth = true;"
        " require_once '/var/www/localhost/htdocs/openemr/interface/globals.php'; " + body
    )
    return host.exec(f"docker exec -i {app} php", input=script, check=True).stdout.strip()


def test_openemr_keeps_time_in_the_configured_zone(launched: Launched) -> None:
    """The image has no tzdata, so TZ does nothing in it: OpenEMR's zone is its gbl_time_zone global, which sets
    PHP's zone and the database session's. Both follow the config's time zone (America/Chicago, not UTC)."""
    assert launched.config["timezone"] == TIMEZONE != "UTC"
    seen = json.loads(
        openemr_php(
            launched.host,
            """echo json_encode([
        'php' => date_default_timezone_get(),
        'offset' => (new DateTime())->format('P'),
        'db' => sqlQuery('SELECT @@session.time_zone AS zone')['zone'],
    ]);""",
        )
    )
    assert seen["php"] == TIMEZONE and seen["db"] == seen["offset"] != "+00:00", seen


def test_the_database_collation_is_the_one_openemr_creates(launched: Launched) -> None:
    """OpenEMR creates its database utf8mb4_general_ci; a server default that differs mixes collations in its
    upgrade scripts on newer MariaDB (openemr#7784)."""
    seen = json.loads(
        openemr_php(
            launched.host,
            """echo json_encode(sqlQuery(
        'SELECT @@collation_server AS server, @@character_set_server AS charset'));""",
        )
    )
    assert seen == {"server": "utf8mb4_general_ci", "charset": "utf8mb4"}


def test_only_the_proxy_publishes_ports(launched: Launched) -> None:
    out = launched.host.exec(
        f"docker ps --filter label=com.docker.compose.project={LAYOUT['project']} --format "
        "'{{.Label \"com.docker.compose.service\"}} {{.Ports}}'",
        check=True,
    ).stdout
    published = {line.split()[0]: "->" in line for line in out.splitlines()}
    assert published == {"db": False, "app": False, "proxy": True}


def service_container(host: hosts.TestHost, service: str) -> dict:
    """`docker inspect` of the project's container for `service`."""
    return json.loads(
        host.exec(
            f"docker inspect $(docker ps -q --filter label=com.docker.compose.project={LAYOUT['project']}"
            f" --filter label=com.docker.compose.service={LAYOUT['services'][service]})",
            check=True,
        ).stdout
    )[0]


def reaches(host: hosts.TestHost, source: dict, ip: str, port: int) -> bool:
    """Whether a TCP connection from `source`'s network namespace to ip:port opens (the host's own bash, so
    the check needs no tool in the container's image)."""
    pid = source["State"]["Pid"]
    return host.exec(f"nsenter -t {pid} -n timeout 5 bash -c '</dev/tcp/{ip}/{port}'").returncode == 0


def test_the_proxy_cannot_reach_the_database_and_openemr_can(launched: Launched) -> None:
    db, app, proxy = (service_container(launched.host, service) for service in ("db", "app", "proxy"))
    db_addresses = [net["IPAddress"] for net in db["NetworkSettings"]["Networks"].values() if net["IPAddress"]]
    assert db_addresses, db["NetworkSettings"]
    assert not any(reaches(launched.host, proxy, ip, 3306) for ip in db_addresses), db_addresses
    # The same check sees what must stay open: OpenEMR reaches the database, the proxy reaches OpenEMR.
    assert all(reaches(launched.host, app, ip, 3306) for ip in db_addresses)
    shared = set(app["NetworkSettings"]["Networks"]) & set(proxy["NetworkSettings"]["Networks"])
    assert len(shared) == 1, shared
    assert reaches(launched.host, proxy, app["NetworkSettings"]["Networks"][shared.pop()]["IPAddress"], 80)


@pytest.mark.parametrize("name", ["launched", "empty"])
def test_every_service_is_confined(request: pytest.FixtureRequest, name: str) -> None:
    """On Debian 13 (Compose v2) and Debian 12 (Compose v1): no new privileges, only the capabilities each needs
    (the proxy none but binding 80 and 443), and limits on memory and processes below the host's."""
    host = request.getfixturevalue(name).host
    memory = int(host.exec("grep '^MemTotal:' /proc/meminfo", check=True).stdout.split()[1]) * 1024  # in kB
    for service in LAYOUT["services"]:
        config = service_container(host, service)["HostConfig"]
        assert "no-new-privileges:true" in (config["SecurityOpt"] or []), (service, config["SecurityOpt"])
        assert 0 < config["Memory"] < memory and (config["PidsLimit"] or 0) > 0, (service, config)
        dropped = {cap.removeprefix("CAP_") for cap in config["CapDrop"] or []}
        assert ("ALL" in dropped) if service == "proxy" else {"NET_RAW", "MKNOD"} <= dropped, (service, dropped)


def test_secrets_and_env_file_are_root_only(launched: Launched) -> None:
    paths = [f"{SECRETS_DIR}/{name}" for name in STACK_SECRETS] + [f"{COMPOSE_DIR}/.env"]
    out = launched.host.exec("stat -c '%a %U %n' " + " ".join(paths), check=True).stdout
    lines = out.splitlines()
    assert len(lines) == len(paths) and all(line.startswith("600 root ") for line in lines), lines
    assert launched.host.exec(f"stat -c '%a' {SECRETS_DIR}", check=True).stdout.strip() == "700"


def test_access_log_is_json_on_the_host(launched: Launched) -> None:
    request(launched.host.ip, "GET", "/interface/login/login.php?from=access-log-test")
    lines = launched.host.exec(f"tail -n 20 {LAYOUT['proxy_log_dir']}/access.log", check=True).stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert any(e.get("request", {}).get("uri") == "/interface/login/login.php?from=access-log-test" for e in entries)


def test_daemon_json_is_in_force(launched: Launched) -> None:
    info = launched.host.exec(
        "docker info --format '{{.LoggingDriver}} {{.LiveRestoreEnabled}}'", check=True
    ).stdout.split()
    assert info == ["json-file", "true"]
    options = json.loads(launched.host.exec("cat /etc/docker/daemon.json", check=True).stdout)["log-opts"]
    assert options.get("max-size") and options.get("max-file"), options  # log rotation
    app = launched.host.exec(
        f"docker ps -q --filter label=com.docker.compose.project={LAYOUT['project']} "
        "--filter label=com.docker.compose.service=app",
        check=True,
    ).stdout.strip()
    nnp = launched.host.exec(f"docker exec {app} grep NoNewPrivs /proc/1/status", check=True).stdout
    assert nnp.split() == ["NoNewPrivs:", "1"]


# --- failure modes, on copies of their own -------------------------------------------------------------------

#: Two broken references to the app's image: one no source has, and the database image in the app's place
#: (it exits at once, without MARIADB_ROOT_PASSWORD, and restarts in a loop).
BROKEN = {"missing": "shuttle-standin/openemr:0.0-not-anywhere", "crash-loop": IMAGES["mariadb"]}


@dataclass
class Broken:
    hosts: dict[str, hosts.TestHost]
    before: dict[str, str]
    run: Run

    def failures(self, name: str) -> str:
        return "\n".join(
            str(e.get("message", "")) for e in self.run.events if e.get("status") == "failed" and e.get("host") == name
        )


@sites.job("broken", needs=("launched",), weight=2)
def build_broken(session: sites.Session) -> Broken:
    """Two copies of the launched host, launched in one run, each with its own broken image (per-host settings)."""
    launched = session.get("launched")
    copies = boot_copies(session, launched.snapshot, BROKEN)
    before = {name: host.exec("docker ps -q --no-trunc | sort").stdout for name, host in copies.items()}
    tmp = session.tmp("broken")
    path = inventory(tmp / "inventory.yml", copies, tmp, **host_vars_for_tests())
    data = yaml.safe_load(path.read_text())
    for name, image in BROKEN.items():
        data["all"]["hosts"][name]["shuttle_settings"] = {"images": {**IMAGES, "openemr": image}}
    path.write_text(yaml.safe_dump(data))
    run = run_shuttle("launch", "-i", str(path), "--json", config=launched.config, tmp=tmp)
    return Broken(copies, before, run)


@pytest.fixture(scope="module")
def broken(session: sites.Session) -> Broken:
    return session.get("broken")


def test_broken_images_fail_the_run_and_only_their_hosts(broken: Broken) -> None:
    assert broken.run.returncode == 1, broken.run.explain()
    assert {name: result["status"] for name, result in broken.run.summary["hosts"].items()} == {
        name: "failed" for name in BROKEN
    }


def test_an_image_missing_everywhere_fails_before_the_stack_is_touched(broken: Broken) -> None:
    message = broken.failures("missing")
    assert "service app" in message and BROKEN["missing"] in message, message
    assert "could not be pulled" in message, message
    assert broken.hosts["missing"].exec("docker ps -q --no-trunc | sort").stdout == broken.before["missing"]


def test_an_image_that_does_not_start_fails_by_the_readiness_rule_with_its_logs(broken: Broken) -> None:
    """A crash loop ends the wait as failed (restarts counted), not by the 900 s timeout running out."""
    message = broken.failures("crash-loop")
    assert message.startswith("the stack failed: service app is"), message
    assert "did not become ready" not in message
    assert "log lines" in message and "password option is not specified" in message, message


def test_empty_mode_starts_an_unconfigured_app(empty: Empty) -> None:
    status = json.loads(request(empty.host.ip, "GET", "/status.php").body)  # type: ignore[attr-defined]
    assert status["configured"] is False and status["admin_exists"] is False
    assert request(empty.host.ip, "GET", "/interface/login/login.php", tls=False).status in (301, 308)
    assert any("running unconfigured (empty mode)" in notice for notice in empty.runs[0].summary["notices"])


def test_no_generated_secret_in_any_output(launched: Launched, empty: Empty) -> None:
    for host, runs in ((launched.host, [launched.run, launched.check_run]), (empty.host, empty.runs)):
        for name in STACK_SECRETS:
            value = secret(host, name)
            for run in runs:
                assert value not in run.stdout and value not in run.stderr, f"{name} appears in the output"
