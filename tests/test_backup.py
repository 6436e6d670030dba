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
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import requests

from tests import sites
from tests.conftest import (
    AGENT,
    LAYOUT,
    SECRETS_DIR,
    Run,
    Site,
    boot_copy,
    run_shuttle,
    secret,
    site,
    stack_config,
    wait_stack,
)  # fmt: skip
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
    s3_owner: str
    a_passphrase: str
    sftp_unknown_key_launch: Run
    sftp_known_key_launch: Run
    refused_without_yes: Run
    refused_wrong_passphrase: Run
    b_before_refusals: dict
    b_after_refusals: dict
    commands: list[str]
    sftp: Sftp


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
    a.backup()  # to S3, as the host it was copied from (not launched again, it has that host's identity)
    s3_owner = a.backups()["host"]
    # The SFTP server does not know A's new key yet: the launch cannot create the repository, and says so;
    # once the key is there, the next launch creates it.
    unknown_key = a.relaunch(backup={"target": sftp.target("clinic")})
    sftp.allow(a.sftp_public_key())
    known_key = a.relaunch()
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
    from_a = ("--from-host", a.host.name)
    # A's launch that created the SFTP repository wrote a recovery key on this machine: B restores with it alone.
    recovery = a.tmp / "shuttle-recovery" / f"{a.host.name}.key"
    without_yes = b.shuttle("restore", "--passphrase-file", str(recovery), *from_a)
    wrong = b.tmp / "wrong-passphrase"
    wrong.write_text("not-the-passphrase\n")
    wrong_run = b.shuttle("restore", "--yes", "--passphrase-file", str(wrong), *from_a)
    after = b_state(b)
    restored = b.shuttle("restore", "--yes", "--passphrase-file", str(recovery), *from_a)
    assert restored.returncode == 0, restored.explain()
    return Drill(
        a, b, a_tables, a_documents, secret(a.host, "openemr-admin-password"), a_run, s3_config, s3_owner,
        str(passphrase), unknown_key, known_key, without_yes, wrong_run, before, after, recorder.since(mark), sftp,
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
    """Every table (the database's encryption key in `keys` too) and every file under documents/: the ten
    uploaded and the site's drive key, which only that database key unlocks."""
    uploaded = [path for path in drill.a_documents if not path.startswith("./logs_and_misc/methods/")]
    assert len(uploaded) == 10 and "./logs_and_misc/methods/sixa" in drill.a_documents, sorted(drill.a_documents)
    assert "openemr.keys" in drill.a_tables, sorted(drill.a_tables)
    assert table_checksums(drill.b.host) == drill.a_tables
    assert document_hashes(drill.b.host) == drill.a_documents
    status = App(drill.b.host).status()
    assert (status["configured"], status["patients"], status["documents_intact"]) == (True, 5, 10), status


def app_env(host: hosts.TestHost) -> dict[str, str]:
    """The app container's environment, as its entrypoint sees it (names and values; read by the test only)."""
    listing = host.exec(
        f"docker inspect --format '{{{{range .Config.Env}}}}{{{{println .}}}}{{{{end}}}}' {container(host, 'app')}",
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in listing.splitlines() if "=" in line)


def test_the_host_launched_empty_runs_as_a_full_site_once_restored(drill: Drill) -> None:
    """MANUAL_SETUP=yes would keep OpenEMR from upgrading its site and leave its setup pages reachable."""
    assert drill.b.config["mode"] == "empty"
    assert app_env(drill.b.host)["MANUAL_SETUP"] == "no"


def test_an_sftp_server_that_does_not_know_the_key_yet_gets_its_repository_at_the_next_launch(drill: Drill) -> None:
    unknown, known = drill.sftp_unknown_key_launch, drill.sftp_known_key_launch
    assert any("cannot be reached yet" in line and "run `shuttle launch` again" in line
               for line in unknown.summary["warnings"]), unknown.summary  # fmt: skip
    assert any("created the backup repository sftp:" in line for line in known.summary["notices"]), known.summary
    assert any("recovery key" in line and "keep a copy off-site" in line for line in known.summary["notices"])
    key = drill.a.tmp / "shuttle-recovery" / f"{drill.a.host.name}.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert drill.a.host.exec(f"test -e {LAYOUT['recovery_key']}").returncode != 0, "the recovery key stayed on A"
    found = drill.a.host.exec("grep -rlF -f - /etc /var/lib/shuttle", input=key.read_text().strip() + "\n")
    assert found.stdout == "", f"the recovery key is in {found.stdout} on A"


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
    doomed = next(path for path in drill.a_documents if "/methods/" not in path).removeprefix("./")
    b.host.exec(f"docker exec {container(b.host, 'app')} rm {SITES}/default/documents/{doomed}", check=True)
    assert table_checksums(b.host) != drill.a_tables and document_hashes(b.host) != drill.a_documents
    # B's own passphrase does not open A's S3 repository, and B's config names no recovery key that does: launched
    # --empty, B is told how to take it over.
    own_key_only = {name: value for name, value in drill.s3_config.items() if name != "recovery_key_file"}
    launched = b.relaunch("--empty", backup=own_key_only)
    assert any("passphrase does not open it" in line for line in launched.summary["notices"]), launched.summary
    assert app_env(b.host)["MANUAL_SETUP"] == "no", "a restored site launched --empty again went back to setup"
    run = b.shuttle("restore", "--yes", "--passphrase-file", drill.a_passphrase, "--from-host", drill.s3_owner)
    assert run.returncode == 0, run.explain()
    assert table_checksums(b.host) == drill.a_tables
    assert document_hashes(b.host) == drill.a_documents
    assert any("this host's passphrase now opens" in line for line in run.summary["notices"]), run.summary


def patients(app: App) -> int:
    return int(app.status()["patients"])


def test_same_day_backups_survive_each_other_and_every_restore_including_its_safety_backup(drill: Drill) -> None:
    """The nightly backup restored the next morning, after a manual one that day: the restore must find it, and
    the safety backup it takes must not push anything out (on Debian 13: restic 0.18)."""
    a = drill.a
    app = App(a.host)
    browser = app.session("admin", drill.a_admin_password)
    first = patients(app)
    app.add_patient(browser, "Morning", "Patient")
    r1 = a.backup().summary["backups"][a.host.name]["last_run"]["run"]
    app.add_patient(browser, "Noon", "Patient")
    r2 = a.backup().summary["backups"][a.host.name]["last_run"]["run"]
    app.add_patient(app.session("admin", drill.a_admin_password), "Unsaved", "Patient")
    assert patients(app) == first + 3

    latest = a.shuttle("restore", "--yes")
    assert latest.returncode == 0, latest.explain()
    assert patients(app) == first + 2, "restore latest did not bring the second backup of the day"
    listed = {entry["run"]: entry for entry in a.backups()["backups"]}
    assert {drill.a_backup, r1, r2} <= set(listed), f"a same-day backup was forgotten: {sorted(listed)}"
    (safety,) = [run for run, entry in listed.items() if entry["safety"]]

    by_id = a.shuttle("restore", "--yes", "--snapshot", r1)
    assert by_id.returncode == 0, by_id.explain()
    assert patients(app) == first + 1
    listed = {entry["run"]: entry for entry in a.backups()["backups"]}
    assert safety in listed and sum(entry["safety"] for entry in listed.values()) == 2

    back = a.shuttle("restore", "--yes", "--snapshot", safety)
    assert back.returncode == 0, back.explain()
    assert patients(app) == first + 3, "the safety backup did not hold the state before the restore"


def forge_run(host: hosts.TestHost, *, database: str) -> str:
    """A run in A's repository made as the agent makes one, except for `database`: 'truncated' (its database
    part is the first half of a real dump, and it has no manifest) or 'unlike its manifest' (a whole dump, and a
    manifest that counts one patient more). Its ID."""
    script = f"""
import subprocess, sys
sys.path.insert(0, {LAYOUT["agent_dir"]!r})
from pathlib import Path
from shuttle_host import backup, manifest, restic, runs, settings
s = settings.load(Path({SETTINGS!r}))
repo, site = restic.Repository(s.layout, s.backup), backup.Site(s)
run_id = runs.new_run_id()
tags = [o for t in [*runs.host_tags(repo.host), runs.RUN_TAG + run_id] for o in ("--tag", t)]
dump = site.db.dump()
data = dump.stdout.read()
assert dump.wait() == 0
part = data[: len(data) // 2] if {database!r} == "truncated" else data
name = site.db.name + ".sql"
subprocess.run(repo.argv("backup", "--stdin", "--stdin-filename", name, "--host", repo.host, *tags, "--tag", "part=db"),
               env=repo.env, input=part, check=True, capture_output=True)
paths = site.paths()
if {database!r} == "unlike its manifest":
    digest = manifest.DumpDigest()
    for line in data.splitlines(keepends=True):
        digest.feed(line)
    tables = digest.tables()
    tables["patient_data"]["rows"] += 1
    paths.append(site.write_manifest(run_id, tables, site.canary()))
repo.backup_paths(paths, [*tags, "--tag", "part=files"], exclude=[])
print(run_id)
"""
    return host.exec(f"python3 -c {shlex.quote(script)}", check=True).stdout.strip()


def live_state(host: hosts.TestHost) -> dict:
    """What a restore must either leave as it is or replace as a whole: every table, every document, and the
    debris a restore may leave (staged copies, scratch databases, an unfinished journal)."""
    leftovers = host.exec(
        f"ls -d /var/lib/docker/volumes/*/*.restore-* {LAYOUT['config_dir']}.restore-* 2>/dev/null;"
        f" test -e {LAYOUT['restore_journal']} && echo journal", check=False
    ).stdout.split()  # fmt: skip
    scratch = db_sql(host, "SHOW DATABASES LIKE 'openemr\\_%'").split()
    return {"tables": table_checksums(host), "documents": document_hashes(host), "leftovers": leftovers + scratch}


def app_started(host: hosts.TestHost) -> str:
    return host.exec(f"docker inspect --format '{{{{.State.StartedAt}}}}' {container(host, 'app')}", check=True).stdout


def refused_forged_run(a: Drilled, database: str) -> tuple[str, Run]:
    """A forged run (forge_run) restored: refused before the app stops, every table, document and leftover
    as before. The run's ID and the refused restore."""
    forged = forge_run(a.host, database=database)
    before, started = live_state(a.host), app_started(a.host)
    run = a.shuttle("restore", "--yes", "--snapshot", forged)
    assert run.returncode == 1, run.explain()
    assert "nothing on this host was changed" in run.failures, run.explain()
    assert app_started(a.host) == started, "the app was stopped for a backup that could not be restored"
    assert live_state(a.host) == before and before["leftovers"] == []
    return forged, run


def test_a_backup_whose_database_part_cannot_be_read_is_refused_while_the_app_still_serves(drill: Drill) -> None:
    _, run = refused_forged_run(drill.a, "truncated")
    assert "database dump" in run.failures, run.explain()


def test_a_backup_unlike_its_manifest_is_refused_by_the_restore_and_failed_by_the_drill(drill: Drill) -> None:
    a = drill.a
    forged, run = refused_forged_run(a, "unlike its manifest")
    assert "does not match its manifest: table patient_data has" in run.failures, run.explain()
    drilled = a.shuttle("drill", "--snapshot", forged)
    assert drilled.returncode == 1, drilled.explain()
    assert "table patient_data has" in drilled.failures and "rows, the backup had" in drilled.failures
    assert drill_leftovers(a.host) == ""


def test_too_little_free_space_for_the_staged_copies_is_refused_and_changes_nothing(drill: Drill) -> None:
    """The margin is raised on the host until no disk here has the room (filling this machine's disk instead
    would starve every other test)."""
    a = drill.a
    path = f"{SETTINGS}/backup.json"
    original = a.host.exec(f"cat {path}", check=True).stdout
    a.host.exec(f"cat > {path}", input=json.dumps({**json.loads(original), "restore_space_margin": 10**9}), check=True)
    try:
        before, started = live_state(a.host), app_started(a.host)
        run = a.shuttle("restore", "--yes", "--snapshot", drill.a_backup)
    finally:
        a.host.exec(f"cat > {path}", input=original, check=True)
    assert run.returncode == 1, run.explain()
    assert "MiB free beside" in run.failures and "nothing was changed" in run.failures, run.explain()
    assert live_state(a.host) == before and app_started(a.host) == started


RESTORE_UNIT = f"{LAYOUT['units']['restore']}.service"
#: What the host shows at each point a restore is killed (patterns in brackets so pgrep never finds its own shell).
KILL_POINTS = {
    "staging the files": "pgrep -f '[r]estic .*restore .*--target' >/dev/null",
    "loading the database": "pgrep -f '[r]estic .*dump ' >/dev/null",
    "swapping (database, directories, passwords, start)": f"grep -qs swapping {LAYOUT['restore_journal']}",
}


def wait_for(condition: str) -> str:
    """A shell command, run on the host, that returns within milliseconds of `condition` becoming true."""
    return f"timeout 300 sh -c {shlex.quote(f'until {condition}; do :; done')}"


def restore_unit_done(host: hosts.TestHost, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while (state := host.exec(f"systemctl is-active {RESTORE_UNIT}").stdout.strip()) in ("activating", "deactivating"):
        assert time.monotonic() < deadline, "the restore unit (or its roll-back) did not end"
        time.sleep(1)
    return state


def test_a_restore_killed_while_staging_loading_or_swapping_leaves_the_host_as_before(drill: Drill) -> None:
    """SIGKILL runs no handler in the agent: the unit's stop rolls the host back by what the journal and the
    host itself say. After each kill, every table and document is as before the restore; then a restore whose
    caller (the controller) is killed midway still completes on the host."""
    a = drill.a
    before = live_state(a.host)
    assert before["tables"] != drill.a_tables, "the backup restored must differ from the live state"
    request = json.dumps({"run": drill.a_backup, "from_host": "", "passphrase": False})
    for point, condition in KILL_POINTS.items():
        a.host.exec(f"cat > {LAYOUT['restore_request']}", input=request, check=True)
        a.host.exec(f"systemctl reset-failed {RESTORE_UNIT}; systemctl start --no-block {RESTORE_UNIT}", check=True)
        frozen = a.host.exec(f"{wait_for(condition)} && systemctl kill -s STOP {RESTORE_UNIT}")
        assert frozen.returncode == 0, f"the restore never reached {point}: {frozen.stderr}"
        a.host.exec(f"systemctl kill -s KILL {RESTORE_UNIT}; systemctl kill -s CONT {RESTORE_UNIT}")
        assert restore_unit_done(a.host) == "failed"
        wait_stack(a.host)
        assert live_state(a.host) == before, f"killed while {point}, the host was left changed"
        record = json.loads(a.host.exec(f"cat {LAYOUT['restore_record']}", check=True).stdout)
        assert record["result"] == "failed" and drill.a_backup in record["message"], record

    caller = subprocess.Popen(
        [sys.executable, "-m", "shuttle", "restore", "-i", str(a.inventory), "--json", "--yes",
         "--snapshot", drill.a_backup],
        cwd=a.tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env={**os.environ, "SHUTTLE_LOG_DIR": str(a.tmp / "logs")}, start_new_session=True,
    )  # fmt: skip
    reached = a.host.exec(wait_for(KILL_POINTS["loading the database"]))
    os.killpg(caller.pid, signal.SIGKILL)
    caller.wait()
    assert reached.returncode == 0, "the restore unit never started"
    assert restore_unit_done(a.host) == "inactive"
    record = json.loads(a.host.exec(f"cat {LAYOUT['restore_record']}", check=True).stdout)
    assert record["result"] == "ok", record
    after = live_state(a.host)
    assert after["tables"] == drill.a_tables and after["documents"] == drill.a_documents
    assert after["leftovers"] == []


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


DRILL_LABEL = f"label=com.docker.compose.project={LAYOUT['drill_project']}"


def drill_leftovers(host: hosts.TestHost) -> str:
    """What a drill may leave behind and must not: its containers, volumes, network and directory."""
    return host.exec(
        f"docker ps -aq --filter {DRILL_LABEL}; docker volume ls -q --filter {DRILL_LABEL};"
        f" docker network ls -q --filter {DRILL_LABEL}; ls -A {LAYOUT['drill_dir']} 2>/dev/null"
    ).stdout.strip()


def live_containers(host: hosts.TestHost) -> str:
    return host.exec(
        "docker ps -aq | xargs -r docker inspect --format '{{.Name}} {{.Id}} {{.State.StartedAt}}' | sort", check=True
    ).stdout


def test_the_drill_restores_the_latest_backup_beside_the_live_site_and_proves_it(drill: Drill) -> None:
    """`shuttle drill`: the latest backup restored into a scratch project, its tables, rows and documents as
    the manifest says, OpenEMR answering on it; the live stack untouched, nothing left behind."""
    a = drill.a
    latest = a.backup().summary["backups"][a.host.name]["last_run"]["run"]
    before = live_containers(a.host)
    run = a.shuttle("drill")
    assert run.returncode == 0, run.explain()
    drilled = run.summary["backups"][a.host.name]["last_drill"]
    assert drilled["result"] == "ok" and drilled["run"] == latest, drilled
    checked = drilled["checked"]
    assert checked["manifest"] and checked["app"] and checked["encryption"], checked
    assert checked["tables"] >= 3 and checked["rows"] > 0 and checked["documents"] >= len(drill.a_documents), checked
    assert drill_leftovers(a.host) == ""
    assert live_containers(a.host) == before, "the drill touched the live stack"
    status = a.shuttle("status").summary["status"][a.host.name]
    assert status["last_drill"]["result"] == "ok" and status["last_drill"]["run"] == latest
    timer = f"{LAYOUT['units']['drill']}.timer"
    assert a.host.exec(f"systemctl is-enabled {timer}").stdout.strip() == "enabled"
    calendar = a.host.exec(f"systemctl show -p TimersCalendar --value {timer}", check=True).stdout
    assert "*-*-01 00:00:00" in calendar, calendar


def test_a_drill_of_a_repository_with_damaged_packs_fails_naming_what_and_leaves_nothing(drill: Drill) -> None:
    a, server = drill.a, drill.sftp.host
    repo, pristine = "/srv/backups/clinic", "/srv/pristine-clinic"
    server.exec(
        f"set -e; rm -rf {pristine}; cp -a {repo} {pristine}; for pack in $(find {repo}/data -type f); do"
        " size=$(stat -c %s $pack); printf damaged | dd of=$pack bs=1 seek=$((size / 2)) conv=notrunc status=none;"
        " done",
        check=True,
    )
    try:
        run = a.shuttle("drill")
        assert run.returncode == 1, run.explain()
        drilled = a.shuttle("status").summary["status"][a.host.name]["last_drill"]
        assert drilled["result"] == "failed" and "could not be restored" in drilled["message"], drilled
        assert "could not be restored" in run.failures, run.explain()
        assert drill_leftovers(a.host) == ""
    finally:
        server.exec(f"rm -rf {repo} && mv {pristine} {repo}", check=True)


def test_a_target_directory_that_vanished_fails_the_nightly_run_and_no_repository_is_made(drill: Drill) -> None:
    """An unmounted NAS looks like an empty directory, or none: the scheduled run must fail, not start a fresh
    repository on the data disk. The target is switched on the host as a launch would (settings, then `backup
    init`), so no launch is paid for."""
    a, unit = drill.a, f"{LAYOUT['units']['backup']}.service"
    path, nas = f"{SETTINGS}/backup.json", "/srv/clinic-nas"
    original = a.host.exec(f"cat {path}", check=True).stdout
    moved = {**json.loads(original), "repository": f"{nas}/shuttle"}
    a.host.exec(f"cat > {path}", input=json.dumps(moved), check=True)
    try:
        created = a.host.exec(f"mkdir -p {nas} && {AGENT} backup init", check=True)
        assert json.loads(created.stdout)["state"] == "created"
        a.host.exec(f"rm -rf {nas}", check=True)  # the share is gone
        assert a.host.exec(f"systemctl start {unit}").returncode != 0
        assert a.host.exec(f"test -e {nas}").returncode != 0, "the run made a new repository where the share was"
        status = a.shuttle("status")
        last = status.summary["status"][a.host.name]["last_backup"]
        assert last["result"] == "failed" and "there is no backup repository" in last["message"], last
    finally:
        a.host.exec(f"cat > {path}", input=original, check=True)
        a.host.exec(f"systemctl reset-failed {unit}")


def test_two_hosts_in_one_s3_repository_each_see_and_restore_only_their_own(drill: Drill) -> None:
    """B (Debian 12: restic 0.14) and A share A's S3 bucket and path. B's two same-day backups both survive
    and `latest` restores the second; each host lists only its own runs and `latest` is its own."""
    a, b = drill.a, drill.b
    app = App(b.host)
    browser = app.session("admin", drill.a_admin_password)
    app.add_patient(browser, "OnlyOn", "B")
    b_first = b.backup().summary["backups"][b.host.name]["last_run"]["run"]
    app.add_patient(browser, "AlsoOn", "B")
    b_second = b.backup().summary["backups"][b.host.name]["last_run"]["run"]
    count = patients(app)
    app.add_patient(app.session("admin", drill.a_admin_password), "Unsaved", "B")
    run = b.shuttle("restore", "--yes")
    assert run.returncode == 0, run.explain()
    assert patients(app) == count
    b_runs = {entry["run"] for entry in b.backups()["backups"]}
    assert {b_first, b_second} <= b_runs

    a.relaunch(backup=drill.s3_config)
    a_run = a.backup().summary["backups"][a.host.name]["last_run"]["run"]
    a_list, b_list = a.backups(), b.backups()
    assert {entry["host"] for entry in a_list["backups"]} == {a.host.name}
    assert {entry["host"] for entry in b_list["backups"]} == {b.host.name}
    assert a_run in {entry["run"] for entry in a_list["backups"]} and not b_runs & {e["run"] for e in a_list["backups"]}
    picked = json.loads(a.host.exec(f"{AGENT} backup can-restore --run latest", check=True).stdout)
    assert picked["run"] == a_run and picked["host"] == a.host.name
    everyone = set(json.loads(_restic(a.host, "json.dumps(restic.runs.hosts_in(repo.snapshots()))")))
    assert {a.host.name, b.host.name, drill.s3_owner} <= everyone, "the repository should hold all three hosts' runs"


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
