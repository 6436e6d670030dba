"""Backups and restores, as a clinic would live through them: the recovery drill onto a new host.

Host A is launched with the stand-in stack; patients and documents are created through the app's
HTTP interface; `shuttle backup` saves to S3 (a moto server on this machine) and, after A is
re-launched with an SFTP target, to an SFTP server (another test host running sshd). A fresh host B
runs `launch --empty` with the SFTP target and `restore --yes` with A's passphrase: every table's
checksum and every document's SHA-256 must match A's, and A's admin password must log in on B.
B is then pointed at the S3 repository and restored from it the same way.

Then on A: an older backup restored by its ID brings back the older state; a backup killed midway
leaves a repository that checks clean and a next run that succeeds; the timer is enabled and its
service records its result. Refusals (no --yes, a wrong passphrase) change nothing.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import Run, launch, run_shuttle, ssh_args, stack_config
from tests.harness import hosts
from tests.standins import LOGIN_POST

# The test hosts serve Caddy's internal CA: requests to them are deliberately unverified.
pytestmark = [pytest.mark.hosts, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

SITES = "/var/www/localhost/htdocs/openemr/sites"
SECRETS = "/etc/shuttle/secrets"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[str]:
    """A moto S3 server on this machine, reachable from the test hosts at the network's gateway."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "0.0.0.0", "-p", str(port)], stdout=log, stderr=log
    )
    endpoint = f"http://{hosts.gateway()}:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.5)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@dataclass
class Sftp:
    host: hosts.TestHost
    user: str = "clinicbackup"

    def target(self, name: str) -> str:
        return f"sftp:{self.user}@{self.host.ip}:/srv/backups/{name}"

    def allow(self, public_key: str) -> None:
        self.host.exec(f"cat >> /home/{self.user}/.ssh/authorized_keys", input=public_key.strip() + "\n", check=True)


@pytest.fixture(scope="module")
def sftp(host_factory) -> Sftp:
    """An SFTP server: a plain test host with sshd and a `clinicbackup` user owning /srv/backups."""
    server = Sftp(host_factory("debian13"))
    user, keys = server.user, f"/home/{server.user}/.ssh/authorized_keys"
    server.host.exec(
        f"set -e; useradd -m -s /bin/sh {user}; install -d -o {user} -m 700 /srv/backups /home/{user}/.ssh;"
        f" install -o {user} -m 600 /dev/null {keys}",
        check=True,
    )
    return server


class App:
    """The OpenEMR stand-in on a host, used over HTTPS as a browser would."""

    def __init__(self, host: hosts.TestHost) -> None:
        self.host = host
        self.base = f"https://{host.ip}"

    def session(self, user: str, password: str) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify=False
        session.verify = False
        form = {"new_login_session_management": "1", "authUser": user, "clearPass": password}
        response = session.post(self.base + LOGIN_POST, data=form, allow_redirects=False, timeout=30)
        assert response.status_code == 302, f"login as {user} failed on {self.host.name}: {response.status_code}"
        return session

    def add_patient(self, session: requests.Session, first: str, last: str) -> int:
        response = session.post(
            self.base + "/interface/patient/new.php", data={"fname": first, "lname": last}, timeout=30
        )
        response.raise_for_status()
        return int(response.json()["id"])

    def upload(self, session: requests.Session, patient: int, name: str, content: bytes) -> None:
        files = {"file": (name, content, "application/octet-stream")}
        response = session.post(
            self.base + "/interface/patient/upload.php", data={"patient_id": patient}, files=files, timeout=120
        )
        response.raise_for_status()

    def status(self) -> dict:
        response = requests.get(self.base + "/status.php?verify=1", verify=False, timeout=30)
        return response.json()


def table_checksums(host: hosts.TestHost) -> dict[str, str]:
    """CHECKSUM TABLE of every table in the application database."""
    sql = (
        "SELECT CONCAT('CHECKSUM TABLE ', GROUP_CONCAT(CONCAT('openemr.`', table_name, '`')), ' EXTENDED;')"
        " FROM information_schema.tables WHERE table_schema = 'openemr'"
    )
    query = db_sql(host, sql).strip()
    assert query.startswith("CHECKSUM TABLE"), query
    rows = [line.split("\t") for line in db_sql(host, query).splitlines()]
    return {name: value for name, value in rows}


def db_sql(host: hosts.TestHost, sql: str) -> str:
    container = host.exec("docker ps -q --filter label=com.docker.compose.service=db", check=True).stdout.strip()
    shell = 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -N -B'
    return host.exec(f"docker exec -i {container} sh -c '{shell}'", input=sql, check=True).stdout


def document_hashes(host: hosts.TestHost) -> dict[str, str]:
    container = host.exec("docker ps -q --filter label=com.docker.compose.service=app", check=True).stdout.strip()
    listing = f"cd {SITES}/default/documents && find . -type f ! -name .keep -exec sha256sum {{}} +"
    out = host.exec(f"docker exec {container} sh -c '{listing}'", check=True).stdout
    return {path: digest for digest, path in (line.split(maxsplit=1) for line in out.splitlines())}


def secret(host: hosts.TestHost, name: str) -> str:
    return host.exec(f"cat {SECRETS}/{name}", check=True).stdout.strip()


@dataclass
class Site:
    """A launched host and the way to drive it with the CLI."""

    host: hosts.TestHost
    tmp: Path
    config: dict

    def launch(self, *args: str, **config: object) -> Run:
        self.config = {**self.config, **config}
        run = launch(self.host, self.config, *args, tmp=self.tmp)
        assert run.returncode == 0, run.explain()
        return run

    def shuttle(self, verb: str, *args: str) -> Run:
        return run_shuttle(verb, *ssh_args(self.host, self.tmp), "--json", *args, tmp=self.tmp)

    def backup(self) -> Run:
        run = self.shuttle("backup")
        assert run.returncode == 0, run.explain()
        return run

    def backups(self) -> dict:
        run = self.shuttle("backup", "--list")
        assert run.returncode == 0, run.explain()
        (report,) = run.summary["backups"].values()
        return report

    def sftp_public_key(self) -> str:
        return self.host.exec(f"cat {SECRETS}/backup-ssh-key.pub", check=True).stdout


def s3_backup(endpoint: str, bucket: str) -> dict:
    key = secrets.token_hex(8)
    return {"target": f"s3:{endpoint}/{bucket}", "s3_access_key_id": f"AKIA{key}", "s3_secret_access_key": key}


@pytest.fixture(scope="module")
def site_a(host_factory, tmp_path_factory, s3: str) -> Site:
    """Host A, launched with an S3 target and given patients and documents through the app."""
    config = stack_config(backup=s3_backup(s3, "clinic-a"))
    site = Site(host_factory("debian13"), tmp_path_factory.mktemp("site-a"), config)
    site.launch()
    app = App(site.host)
    session = app.session("admin", secret(site.host, "openemr-admin-password"))
    for number in range(5):
        patient = app.add_patient(session, f"Pat{number}", "Example")
        app.upload(session, patient, f"scan-{number}.bin", secrets.token_bytes(200_000 + number))
        app.upload(session, patient, f"letter-{number}.txt", f"Dear patient {number}\n".encode() * 100)
    return site


@dataclass
class Drill:
    a: Site
    b: Site
    a_tables: dict[str, str]
    a_documents: dict[str, str]
    a_admin_password: str
    s3_config: dict
    refused_without_yes: Run
    refused_wrong_passphrase: Run
    b_before_refusals: dict
    b_after_refusals: dict


@pytest.fixture(scope="module")
def drill(site_a: Site, sftp: Sftp, host_factory, tmp_path_factory) -> Drill:
    a = site_a
    s3_config = a.config["backup"]
    a.backup()  # to S3
    a.launch(backup={"target": sftp.target("clinic")})
    sftp.allow(a.sftp_public_key())
    a.backup()  # to SFTP
    a_tables, a_documents = table_checksums(a.host), document_hashes(a.host)
    passphrase = a.tmp / "a-passphrase"
    passphrase.write_text(secret(a.host, "backup-passphrase") + "\n")
    passphrase.chmod(0o600)

    b = Site(host_factory("debian13"), tmp_path_factory.mktemp("site-b"), stack_config(mode="empty"))
    b.launch(backup={"target": sftp.target("clinic")})
    sftp.allow(b.sftp_public_key())
    before = App(b.host).status()
    without_yes = b.shuttle("restore", "--passphrase-file", str(passphrase))
    wrong = b.tmp / "wrong-passphrase"
    wrong.write_text("not-the-passphrase\n")
    wrong_run = b.shuttle("restore", "--yes", "--passphrase-file", str(wrong))
    after = App(b.host).status()
    restored = b.shuttle("restore", "--yes", "--passphrase-file", str(passphrase))
    assert restored.returncode == 0, restored.explain()
    return Drill(
        a, b, a_tables, a_documents, secret(a.host, "openemr-admin-password"), s3_config,
        without_yes, wrong_run, before, after,
    )  # fmt: skip


def test_a_backup_is_listed_with_both_parts(drill: Drill) -> None:
    report = drill.a.backups()
    assert report["repository"].startswith("sftp:")
    assert len(report["backups"]) == 1, report
    entry = report["backups"][0]
    assert entry["db"] and entry["files"] and not entry["safety"]
    assert report["last_run"]["result"] == "ok"


def test_the_restored_host_has_every_table_and_document(drill: Drill) -> None:
    assert drill.a_documents and len(drill.a_documents) == 10
    assert table_checksums(drill.b.host) == drill.a_tables
    assert document_hashes(drill.b.host) == drill.a_documents
    status = App(drill.b.host).status()
    assert (status["configured"], status["patients"], status["documents_intact"]) == (True, 5, 10), status


def test_the_old_admin_password_logs_in_on_the_new_host(drill: Drill) -> None:
    App(drill.b.host).session("admin", drill.a_admin_password)
    assert secret(drill.b.host, "openemr-admin-password") == drill.a_admin_password


def test_restore_without_yes_refuses_and_says_what_it_replaces(drill: Drill) -> None:
    run = drill.refused_without_yes
    assert run.returncode == 2
    assert "pass --yes" in run.stderr and "OpenEMR database" in run.stderr and "sites/" in run.stderr, run.stderr


def test_a_wrong_passphrase_is_refused_and_changes_nothing(drill: Drill) -> None:
    run = drill.refused_wrong_passphrase
    assert run.returncode == 2, run.explain()
    assert "does not open the repository" in run.failures, run.explain()
    assert drill.b_after_refusals == drill.b_before_refusals
    assert drill.b_before_refusals["configured"] is False
    assert "not-the-passphrase" not in run.stdout + run.stderr


def test_the_new_host_restores_from_s3_too(drill: Drill) -> None:
    """B (now holding A's passphrase) pointed at A's S3 repository: a restore from there matches A too."""
    b = drill.b
    b.launch("--empty", backup=drill.s3_config)
    run = b.shuttle("restore", "--yes")
    assert run.returncode == 0, run.explain()
    assert table_checksums(b.host) == drill.a_tables
    assert document_hashes(b.host) == drill.a_documents


def test_an_older_backup_restored_by_id_gives_the_older_state(drill: Drill) -> None:
    a = drill.a
    app = App(a.host)
    older = a.backups()["backups"][-1]
    session = app.session("admin", drill.a_admin_password)
    app.add_patient(session, "Later", "Patient")
    assert app.status()["patients"] == 6
    a.backup()
    run = a.shuttle("restore", "--yes", "--snapshot", older["run"])
    assert run.returncode == 0, run.explain()
    assert app.status()["patients"] == 5
    assert table_checksums(a.host) == drill.a_tables
    report = a.backups()
    assert any(entry["safety"] for entry in report["backups"]), "no safety backup before the restore"


def test_a_killed_backup_leaves_no_stale_lock(drill: Drill) -> None:
    a = drill.a
    app = App(a.host)
    session = app.session("admin", drill.a_admin_password)
    app.upload(session, 1, "large-scan.bin", secrets.token_bytes(40_000_000))
    a.host.exec("systemctl start --no-block shuttle-backup.service", check=True)
    deadline = time.monotonic() + 60
    while a.host.exec("pgrep -x restic").returncode != 0:
        assert time.monotonic() < deadline, "the backup never started restic"
        time.sleep(0.2)
    time.sleep(1)
    a.host.exec("systemctl kill -s KILL shuttle-backup.service", check=True)
    a.host.exec("systemctl reset-failed shuttle-backup.service")
    run = a.backup()
    assert "saved" in " ".join(run.summary["notices"])
    check = a.host.exec("/usr/local/sbin/shuttle-backup check --read 100")
    assert check.returncode == 0, check.stderr
    report = a.backups()
    assert all(entry["db"] and entry["files"] for entry in report["backups"])


def test_the_timer_is_enabled_and_its_service_records_the_result(drill: Drill) -> None:
    a = drill.a
    assert a.host.exec("systemctl is-enabled shuttle-backup.timer").stdout.strip() == "enabled"
    assert a.host.exec("systemctl is-active shuttle-backup.timer").stdout.strip() == "active"
    assert a.host.exec("systemctl is-enabled shuttle-backup-check.timer").stdout.strip() == "enabled"
    before = a.backups()["last_run"]
    time.sleep(1)
    assert a.host.exec("systemctl start shuttle-backup.service").returncode == 0
    last = a.backups()["last_run"]
    assert last["result"] == "ok" and last["finished"] >= before["finished"] and last["run"] != before.get("run")


def test_no_secret_in_backup_and_restore_output(drill: Drill) -> None:
    values = [secret(drill.a.host, name) for name in ("backup-passphrase", "db-root-password", "db-password")]
    values.append(drill.a_admin_password)
    values.append(drill.s3_config["s3_secret_access_key"])
    for log in list(drill.a.tmp.glob("logs/*.log")) + list(drill.b.tmp.glob("logs/*.log")):
        text = log.read_text()
        leaked = [index for index, value in enumerate(values) if value in text]
        assert not leaked, f"secret #{leaked} appears in {log.name}"
