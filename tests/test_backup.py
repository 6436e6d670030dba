"""Backups and restores, as a clinic would live through them: the recovery drill onto a new host.

Host A (a copy of the launched host, whose backups go to the session's S3 server, a moto server on this
machine) is given patients and documents through the app's HTTP interface, backed up to S3, launched again
with an SFTP target (another test host running sshd) and backed up there. Host B (a copy of the provisioned host) runs
`launch --empty` with the SFTP target and `restore --yes` with A's passphrase: every table's checksum and
every document's SHA-256 must match A's and A's admin password must log in on B. B is then changed (a
patient added, a document deleted) and restored from S3: A's data again.

Then on A: an older backup restored by its ID brings back the older state; a backup killed in its files
part, after its database part was saved, leaves a partial run and a lock that the next run clears; the
timer is enabled and its service records its result. Refusals (no --yes, a wrong passphrase) change
nothing. No secret reaches a command line, an output or a log.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from dataclasses import dataclass

import pytest
import requests

from tests import sites
from tests.conftest import AGENT, LAYOUT, SECRETS_DIR, Run, Site, boot_copy, run_shuttle, secret, site, stack_config
from tests.harness import hosts
from tests.standins import LOGIN_POST

# The test hosts serve Caddy's internal CA: requests to them are deliberately unverified.
pytestmark = [pytest.mark.hosts, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

SITES = "/var/www/localhost/htdocs/openemr/sites"
SETTINGS = LAYOUT["settings_dir"]


@dataclass
class Sftp:
    host: hosts.TestHost
    user: str = "clinicbackup"

    def target(self, name: str) -> str:
        return f"sftp:{self.user}@{self.host.ip}:/srv/backups/{name}"

    def allow(self, public_key: str) -> None:
        self.host.exec(f"cat >> /home/{self.user}/.ssh/authorized_keys", input=public_key.strip() + "\n", check=True)


def start_sftp(session: sites.Session) -> Sftp:
    """An SFTP server: a plain test host with sshd and a `clinicbackup` user owning /srv/backups."""
    server = Sftp(session.start_host("debian13"))
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


def container(host: hosts.TestHost, service: str) -> str:
    return host.exec(
        f"docker ps -q --filter label=com.docker.compose.project={LAYOUT['project']}"
        f" --filter label=com.docker.compose.service={service}",
        check=True,
    ).stdout.strip()


def db_sql(host: hosts.TestHost, sql: str) -> str:
    shell = 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -N -B'
    return host.exec(f"docker exec -i {container(host, 'db')} sh -c '{shell}'", input=sql, check=True).stdout


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


def document_hashes(host: hosts.TestHost) -> dict[str, str]:
    listing = f"cd {SITES}/default/documents && find . -type f ! -name .keep -exec sha256sum {{}} +"
    out = host.exec(f"docker exec {container(host, 'app')} sh -c '{listing}'", check=True).stdout
    return {path: digest for digest, path in (line.split(maxsplit=1) for line in out.splitlines())}


def _restic(host: hosts.TestHost, expression: str) -> str:
    """`expression` evaluated on the host with `repo`, the agent's restic wrapper for the host's repository (its
    credentials never leave the host)."""
    script = (
        f"import json, sys; sys.path.insert(0, {LAYOUT['agent_dir']!r});"
        "from pathlib import Path; from shuttle_host import settings, restic;"
        f"s = settings.load(Path({SETTINGS!r})); repo = restic.Repository(s.layout, s.backup); print({expression})"
    )
    return host.exec(f"python3 -c {shlex.quote(script)}", check=True).stdout


def raw_locks(host: hosts.TestHost) -> list[str]:
    """The repository's lock files (`restic list locks`), stale ones included."""
    return _restic(host, "repo.run('list', 'locks', '--no-lock').stdout").split()


def raw_runs(host: hosts.TestHost) -> dict[str, set[str]]:
    """Every run in the repository and the parts it has, read with restic directly (not `backup list`,
    which shows complete runs only)."""
    found: dict[str, set[str]] = {}
    for snap in json.loads(_restic(host, "json.dumps(repo.snapshots())")):
        tags = snap.get("tags") or []
        run = next((t.split("=", 1)[1] for t in tags if t.startswith("shuttle-run=")), None)
        part = next((t.split("=", 1)[1] for t in tags if t.startswith("part=")), None)
        if run:
            found.setdefault(run, set()).add(part or "?")
    return found


@dataclass
class Drilled(Site):
    """A host of the drill and how to drive it with the CLI."""

    runs: list[Run] | None = None

    def relaunch(self, *args: str, **config: object) -> Run:
        self.config = {**self.config, **config}
        run = self.launch("--json", *args)
        assert run.returncode == 0, run.explain()
        self.record(run)
        return run

    def record(self, run: Run) -> Run:
        if self.runs is None:
            self.runs = []
        self.runs.append(run)
        return run

    def shuttle(self, verb: str, *args: str) -> Run:
        return self.record(run_shuttle(verb, "-i", str(self.inventory), "--json", *args, tmp=self.tmp))

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
        return self.host.exec(f"cat {SECRETS_DIR}/backup-ssh-key.pub", check=True).stdout


def site_a(session: sites.Session) -> Drilled:
    """Host A: a copy of the launched host (its backups already go to this session's S3 server), given
    patients and documents through the app."""
    launched = session.get("launched")
    base = site(boot_copy(session, launched.snapshot), session.tmp("site-a"), launched.config)
    a = Drilled(base.host, base.tmp, base.inventory, base.config)
    app = App(a.host)
    browser = app.session("admin", secret(a.host, "openemr-admin-password"))
    for number in range(5):
        patient = app.add_patient(browser, f"Pat{number}", "Example")
        app.upload(browser, patient, f"scan-{number}.bin", secrets.token_bytes(200_000 + number))
        app.upload(browser, patient, f"letter-{number}.txt", f"Dear patient {number}\n".encode() * 100)
    return a


@dataclass
class Drill:
    a: Drilled
    b: Drilled
    a_tables: dict[str, str]
    a_documents: dict[str, str]
    a_admin_password: str
    a_backup: str
    s3_config: dict
    refused_without_yes: Run
    refused_wrong_passphrase: Run
    b_before_refusals: dict
    b_after_refusals: dict
    commands: list[str]


def b_state(b: Drilled) -> dict:
    """What a refused restore must leave as it was: Shuttle's files, the containers, the databases."""
    listing = b.host.exec(f"find {LAYOUT['config_dir']} -type f -exec sha256sum {{}} +", check=True).stdout
    files = {path: digest for digest, path in (line.split(maxsplit=1) for line in listing.splitlines())}
    # The SFTP server's host key, recorded at the first contact (accept-new), is the one thing a refused
    # restore may add: contacting the repository is how it learns what a restore would replace.
    files.pop(LAYOUT["backup_known_hosts"], None)
    started = b.host.exec(
        "docker ps -aq | xargs -r docker inspect --format '{{.Id}} {{.State.StartedAt}}' | sort", check=True
    ).stdout
    databases = db_sql(b.host, "SHOW DATABASES; CHECKSUM TABLE mysql.global_priv;")
    return {"files": files, "containers": started, "databases": databases, "app": App(b.host).status()}


@sites.job("drill", needs=("launched", "provisioned", "recorder"), weight=8)
def build_drill(session: sites.Session) -> Drill:
    recorder, sftp = session.get("recorder"), start_sftp(session)
    mark = recorder.mark()
    a = site_a(session)
    s3_config = a.config["backup"]
    a.backup()  # to S3
    a.relaunch(backup={"target": sftp.target("clinic")})
    sftp.allow(a.sftp_public_key())
    a_backup = a.backup().summary["backups"]
    (a_run,) = [report["last_run"]["run"] for report in a_backup.values()]
    a_tables, a_documents = table_checksums(a.host), document_hashes(a.host)
    passphrase = a.tmp / "a-passphrase"
    passphrase.write_text(secret(a.host, "backup-passphrase") + "\n")
    passphrase.chmod(0o600)

    host_b = boot_copy(session, session.get("provisioned").snapshot, stack=False)
    base = site(host_b, session.tmp("site-b"), stack_config(mode="empty"))
    b = Drilled(base.host, base.tmp, base.inventory, base.config)
    b.relaunch(backup={"target": sftp.target("clinic")})
    sftp.allow(b.sftp_public_key())
    before = b_state(b)
    without_yes = b.shuttle("restore", "--passphrase-file", str(passphrase))
    wrong = b.tmp / "wrong-passphrase"
    wrong.write_text("not-the-passphrase\n")
    wrong_run = b.shuttle("restore", "--yes", "--passphrase-file", str(wrong))
    after = b_state(b)
    restored = b.shuttle("restore", "--yes", "--passphrase-file", str(passphrase))
    assert restored.returncode == 0, restored.explain()
    return Drill(
        a, b, a_tables, a_documents, secret(a.host, "openemr-admin-password"), a_run, s3_config,
        without_yes, wrong_run, before, after, recorder.since(mark),
    )  # fmt: skip


@pytest.fixture(scope="module")
def drill(session: sites.Session) -> Drill:
    return session.get("drill")


def test_a_backup_is_listed_with_both_parts(drill: Drill) -> None:
    report = drill.a.backups()
    assert report["repository"].startswith("sftp:")
    (entry,) = [entry for entry in report["backups"] if entry["run"] == drill.a_backup]
    assert entry["db"] and entry["files"] and not entry["safety"]
    assert report["last_run"]["result"] == "ok"
    assert raw_runs(drill.a.host)[drill.a_backup] == {"db", "files"}


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
    assert drill.b_before_refusals["app"]["configured"] is False
    assert "not-the-passphrase" not in run.stdout + run.stderr


def test_the_new_host_restores_from_s3_too(drill: Drill) -> None:
    """B, changed since the SFTP restore (a patient added, a document deleted), pointed at A's S3 repository:
    the restore from there brings back exactly A's data."""
    b = drill.b
    app = App(b.host)
    app.add_patient(app.session("admin", drill.a_admin_password), "Only", "OnB")
    doomed = next(iter(drill.a_documents)).removeprefix("./")
    b.host.exec(f"docker exec {container(b.host, 'app')} rm {SITES}/default/documents/{doomed}", check=True)
    assert table_checksums(b.host) != drill.a_tables and document_hashes(b.host) != drill.a_documents
    b.relaunch("--empty", backup=drill.s3_config)
    run = b.shuttle("restore", "--yes")
    assert run.returncode == 0, run.explain()
    assert table_checksums(b.host) == drill.a_tables
    assert document_hashes(b.host) == drill.a_documents


def test_an_older_backup_restored_by_id_gives_the_older_state(drill: Drill) -> None:
    a = drill.a
    app = App(a.host)
    older = drill.a_backup
    session = app.session("admin", drill.a_admin_password)
    app.add_patient(session, "Later", "Patient")
    assert app.status()["patients"] == 6
    a.backup()
    run = a.shuttle("restore", "--yes", "--snapshot", older)
    assert run.returncode == 0, run.explain()
    assert app.status()["patients"] == 5
    assert table_checksums(a.host) == drill.a_tables
    report = a.backups()
    assert any(entry["safety"] for entry in report["backups"]), "no safety backup before the restore"


def test_a_backup_killed_in_its_files_part_leaves_nothing_that_blocks_the_next(drill: Drill) -> None:
    a = drill.a
    big = f"{SITES}/default/documents/large-scan.bin"
    a.host.exec(f"docker exec {container(a.host, 'app')} sh -c 'head -c 120000000 /dev/urandom > {big}'", check=True)
    unit = f"{LAYOUT['units']['backup']}.service"
    a.host.exec(f"systemctl start --no-block {unit}", check=True)
    # Frozen once the files part's restic runs and holds its lock in the repository: the database part is saved
    # by then, the files part is not.
    deadline = time.monotonic() + 300
    while a.host.exec("pgrep -f '[r]estic .*part=files'").returncode != 0 or not raw_locks(a.host):
        assert a.host.exec(f"systemctl is-active {unit}").stdout.strip() == "activating", "the backup ended first"
        assert time.monotonic() < deadline, "the backup never reached its files part"
        time.sleep(0.2)
    a.host.exec(f"systemctl kill -s STOP {unit}", check=True)
    partial = {run: parts for run, parts in raw_runs(a.host).items() if parts == {"db"}}
    assert len(partial) == 1, f"expected one run with only its database part, found {raw_runs(a.host)}"
    a.host.exec(f"systemctl kill -s KILL {unit}; systemctl kill -s CONT {unit}; systemctl reset-failed {unit}")
    assert raw_locks(a.host), "the killed run's lock is gone: the next run's clean-up would not be exercised"
    run = a.backup()
    assert "saved" in " ".join(run.summary["notices"])
    assert raw_locks(a.host) == [], "the killed run's stale lock is still in the repository"
    runs = raw_runs(a.host)
    assert not set(partial) & set(runs), "the killed run's partial snapshot was not removed"
    assert all(parts == {"db", "files"} for parts in runs.values()), runs
    check = a.host.exec(f"{AGENT} backup check --read 100")
    assert check.returncode == 0, check.stderr


def test_the_timer_is_enabled_and_its_service_records_the_result(drill: Drill) -> None:
    a, units = drill.a, LAYOUT["units"]
    assert a.host.exec(f"systemctl is-enabled {units['backup']}.timer").stdout.strip() == "enabled"
    assert a.host.exec(f"systemctl is-active {units['backup']}.timer").stdout.strip() == "active"
    assert a.host.exec(f"systemctl is-enabled {units['backup_check']}.timer").stdout.strip() == "enabled"
    before = a.backups()["last_run"]
    assert a.host.exec(f"systemctl start {units['backup']}.service").returncode == 0
    last = a.backups()["last_run"]
    assert last["result"] == "ok" and last["run"] != before.get("run") and last["finished"] >= before["finished"]


def test_no_secret_reaches_a_command_line_an_output_or_a_log(drill: Drill) -> None:
    hosts_ = (drill.a.host, drill.b.host)
    names = ("backup-passphrase", "db-root-password", "db-password", "openemr-admin-password")
    values = {secret(host, name) for host in hosts_ for name in names}
    values.add(drill.s3_config["s3_secret_access_key"])
    key = drill.a.host.exec(f"cat {SECRETS_DIR}/backup-ssh-key", check=True).stdout
    values.add(key.splitlines()[1])  # a line of the SFTP private key
    assert len(drill.commands) > 200, "the exec log recorded too little to prove anything"
    outputs = [run.stdout + run.stderr for site_ in (drill.a, drill.b) for run in site_.runs or []]
    logs = [log.read_text() for site_ in (drill.a, drill.b) for log in site_.tmp.glob("logs/*.log")]
    for index, value in enumerate(sorted(values)):
        assert not any(value in command for command in drill.commands), f"secret #{index} was on a command line"
        assert not any(value in text for text in outputs), f"secret #{index} was in a run's output"
        assert not any(value in text for text in logs), f"secret #{index} was in a run log"
