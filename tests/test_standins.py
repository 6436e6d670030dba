"""The stand-in images honour the contracts Shuttle relies on (see tests/standins).

Every other stack test trusts these images to behave like the real ones: set up the site from the env
on first start, answer logins as OpenEMR's main_screen.php does (the fail2ban filter relies on it),
and stay unconfigured with MANUAL_SETUP=yes. These tests check exactly that on real containers,
quickly, so a broken stand-in fails here and not as a puzzling failure in a slow end-to-end test.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shuttle_host import sitekeys
from shuttle_host.errors import Failed
from tests import standins

pytestmark = pytest.mark.hosts


def docker(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True, timeout=120, input=input)


LOGIN = "http://localhost/interface/login/login.php"
LOGIN_POST = "http://localhost" + standins.LOGIN_POST


@dataclass
class Stack:
    """A database and two app containers on a private network; `curl` runs inside an app container."""

    db: str
    app: str
    manual_app: str
    admin_user: str = "admin"
    admin_pass: str = "it's a 'secret' pass"

    def curl(self, *args: str, container: str | None = None) -> subprocess.CompletedProcess[str]:
        return docker("exec", container or self.app, "curl", "-sS", *args, check=False)

    def status(self, container: str | None = None) -> dict:
        out = self.curl("-f", "http://localhost/status.php", container=container)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def login(self, jar: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        """POST the login form; `-w` prints the status code and redirect target after the body."""
        form = [
            "new_login_session_management=1",
            f"authUser={self.admin_user}",
            f"clearPass={self.admin_pass if password is None else password}",
        ]
        fields = [arg for field in form for arg in ("--data-urlencode", field)]
        return self.curl("-c", jar, "-w", "\n%{http_code} %{redirect_url}", *fields, LOGIN_POST)


def wait_for_status(stack: Stack, container: str, timeout: float = 90) -> None:
    """The app serves once its start-up (DB wait, setup) is done; fail with its log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.curl("-f", "-o", "/dev/null", "http://localhost/status.php", container=container).returncode == 0:
            return
        if docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() != "true":
            break
        time.sleep(1)
    logs = docker("logs", container, check=False)
    pytest.fail(f"{container} did not come up:\n{logs.stdout}{logs.stderr}")


@pytest.fixture(scope="module")
def stack(base_images) -> Iterator[Stack]:
    tags = standins.build_all()
    suffix = secrets.token_hex(3)
    network = f"standin-test-{suffix}"
    s = Stack(
        db=f"standin-test-db-{suffix}", app=f"standin-test-app-{suffix}", manual_app=f"standin-test-manual-{suffix}"
    )
    root_pass = secrets.token_urlsafe(12)
    app_env = [
        f"--env=MYSQL_ROOT_PASS={root_pass}",
        "--env=MYSQL_HOST=mysql",
        f"--env=OE_USER={s.admin_user}",
        f"--env=OE_PASS={s.admin_pass}",
    ]
    docker("network", "create", network)
    try:
        db_env = f"--env=MARIADB_ROOT_PASSWORD={root_pass}"
        docker("run", "-d", f"--name={s.db}", f"--network={network}", "--network-alias=mysql", db_env, tags["mariadb"])
        app_pass = f"--env=MYSQL_PASS={secrets.token_urlsafe(12)}"
        docker("run", "-d", f"--name={s.app}", f"--network={network}", *app_env, app_pass, tags["openemr"])
        manual = ["--env=MANUAL_SETUP=yes", "--env=MYSQL_DATABASE=manual"]
        docker("run", "-d", f"--name={s.manual_app}", f"--network={network}", *app_env, *manual, tags["openemr"])
        wait_for_status(s, s.app)
        wait_for_status(s, s.manual_app)
        yield s
    finally:
        # -v: the images declare volumes; their anonymous volumes go with the containers.
        docker("rm", "-fv", s.app, s.manual_app, s.db, check=False)
        docker("network", "rm", network, check=False)


def test_first_start_configures_the_site(stack: Stack) -> None:
    status = stack.status()
    assert (status["configured"], status["admin_exists"]) == (True, True)
    sqlconf = docker("exec", stack.app, "cat", "/var/www/localhost/htdocs/openemr/sites/default/sqlconf.php").stdout
    assert "$config = 1;" in sqlconf


def test_admin_logs_in_with_oe_credentials(stack: Stack) -> None:
    login = stack.login("/tmp/jar")
    assert login.stdout.splitlines()[-1] == "302 http://localhost/interface/main/main.php"
    main = stack.curl("-b", "/tmp/jar", "http://localhost/interface/main/main.php")
    assert f"Welcome {stack.admin_user}" in main.stdout


def test_wrong_password_sends_back_to_the_login_page(stack: Stack) -> None:
    """OpenEMR answers a failed login with 200 and a script back to login.php?error=1, not a redirect."""
    failed = stack.login("/tmp/jar-wrong", password="wrong")
    assert failed.stdout.splitlines()[-1].strip() == "200"
    assert "/interface/login/login.php?error=1" in failed.stdout
    again = stack.curl("-b", "/tmp/jar-wrong", "http://localhost/interface/main/main.php", "-w", "\n%{http_code}")
    assert again.stdout.splitlines()[-1] == "302", "a failed login must not give a session"
    assert "Invalid username or password" in stack.curl(LOGIN + "?error=1&site=default").stdout


def test_patient_and_document_are_recorded(stack: Stack) -> None:
    before = stack.status()
    stack.login("/tmp/jar2")
    new = stack.curl(
        "-f", "-b", "/tmp/jar2", "-d", "fname=Jane", "-d", "lname=Doe", "http://localhost/interface/patient/new.php"
    )
    patient = json.loads(new.stdout)
    docker("exec", stack.app, "sh", "-c", "echo scanned letter >/tmp/letter.txt")
    form = ["-F", f"patient_id={patient['id']}", "-F", "file=@/tmp/letter.txt"]
    doc = json.loads(stack.curl("-f", "-b", "/tmp/jar2", *form, "http://localhost/interface/patient/upload.php").stdout)
    stored = f"/var/www/localhost/htdocs/openemr/sites/default/{doc['path']}"
    assert docker("exec", stack.app, "sha256sum", stored).stdout.split()[0] == doc["sha256"]
    after = stack.status()
    assert (after["patients"], after["documents"]) == (before["patients"] + 1, before["documents"] + 1)


def test_manual_setup_leaves_the_site_unconfigured(stack: Stack) -> None:
    status = stack.status(stack.manual_app)
    assert (status["configured"], status["admin_exists"]) == (False, False)
    front = stack.curl("-w", "\n%{http_code}", "http://localhost/", container=stack.manual_app)
    assert front.stdout.endswith("\n200")
    assert "not configured" in front.stdout
    assert "not configured" in stack.curl(LOGIN, container=stack.manual_app).stdout
    show = 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -N -e "SHOW DATABASES"'
    assert "manual" not in docker("exec", stack.db, "sh", "-c", show).stdout.split()


def test_setup_writes_the_upgrade_marker_and_the_site_keys_and_a_mismatch_stops_decryption(stack: Stack) -> None:
    """As the real image: sites/default/docker-version after setup; the drive key under documents/ unlocks
    only with the database's key; data encrypted by the app decrypts on that pair and on no other."""
    site = "/var/www/localhost/htdocs/openemr/sites/default"
    assert docker("exec", stack.app, "cat", f"{site}/docker-version").stdout.strip() == "7"
    owner = docker("exec", stack.app, "stat", "-c", "%U", f"{site}/documents/logs_and_misc/methods/sixa").stdout
    assert owner.strip() == "www-data"
    with tempfile.TemporaryDirectory() as copy:
        docker("cp", "-a", f"{stack.app}:{site}", copy)  # for the owner sitekeys runs as
        sites = Path(copy)

        class App:
            def running(self, key: str) -> str:
                return stack.app

        made = sitekeys.canary(App(), sites)  # type: ignore[arg-type]
        assert made["ciphertext"].startswith("006") and sitekeys.decrypts(App(), sites, made)  # type: ignore[arg-type]
        assert not sitekeys.decrypts(App(), sites, {**made, "sha256": "0" * 64})  # type: ignore[arg-type]
        sql = 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -N openemr'
        kept = docker("exec", "-i", stack.db, "sh", "-c", sql, input="SELECT name, value FROM `keys`").stdout.split()
        assert kept[0] == "sixa", kept
        other = "UPDATE `keys` SET value = TO_BASE64(RANDOM_BYTES(32))"
        docker("exec", "-i", stack.db, "sh", "-c", sql, input=other)
        try:
            with pytest.raises(Failed, match="Key in drive is not compatible"):
                sitekeys.decrypts(App(), sites, made)  # type: ignore[arg-type]
        finally:
            back = f"UPDATE `keys` SET value = '{kept[1]}' WHERE name = 'sixa'"
            docker("exec", "-i", stack.db, "sh", "-c", sql, input=back)
