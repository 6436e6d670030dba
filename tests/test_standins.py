"""The stand-in images honour the contracts Shuttle relies on (see tests/standins).

Every other stack test trusts these images to behave like the real ones: set up the site from the env
on first start, answer logins as OpenEMR's main_screen.php does (the fail2ban filter relies on it),
stay unconfigured with MANUAL_SETUP=yes, keep settings in the `globals` table and send mail with
MyMailer as those settings say. These tests check exactly that on real containers, quickly, so a
broken stand-in fails here and not as a puzzling failure in a slow end-to-end test.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import secrets
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from shuttle_host import sitekeys
from shuttle_host.errors import Failed
from tests import receivers, standins

pytestmark = pytest.mark.hosts


def docker(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True, timeout=120, input=input)


LOGIN = "http://localhost/interface/login/login.php"
LOGIN_POST = "http://localhost" + standins.LOGIN_POST
OE_ROOT = "/var/www/localhost/htdocs/openemr"
#: The test SMTP server's name, as its certificate says; the app container resolves it to this machine.
SMTP_NAME = "smtp.standin.test"
#: Where the app container finds the test CA, which SSL_CERT_FILE names.
CA_IN_APP = "/run/shuttle-test/ca.pem"

#: The bootstrap the host agent's scripts start with (they run with `docker exec -i -u <owner of sites/> app php`).
BOOT = f"""<?php
$_GET['site'] = 'default';
$_SERVER['HTTP_HOST'] = $_SERVER['SERVER_NAME'] = 'localhost';
$_SERVER['REQUEST_URI'] = $_SERVER['PHP_SELF'] = '/';
$ignoreAuth = true;
require_once '{OE_ROOT}/interface/globals.php';
"""

MAIL_GLOBALS = (
    "EMAIL_METHOD",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USER",
    "SMTP_PASS",
    "SMTP_SECURE",
    "SMTP_Auth",
    "patient_reminder_sender_email",
    "practice_return_email_path",
)


@dataclass
class ThrowawayCA:
    """A throwaway CA and a server certificate it signed for SMTP_NAME (tests/receivers.make_ca)."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_ca(directory: Path) -> ThrowawayCA:
    ca, cert, key = receivers.make_ca(directory, [SMTP_NAME])
    ca.chmod(0o644)  # read in the app container by the owner of sites/
    return ThrowawayCA(ca, cert, key)


@dataclass
class Stack:
    """A database and two app containers on a private network; `curl` runs inside an app container."""

    db: str
    app: str
    manual_app: str
    #: This machine's address on the stack's network (where the test SMTP server listens).
    gateway: str = ""
    tls: ThrowawayCA | None = None
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

    def php(self, body: str, container: str | None = None) -> dict:
        """Run BOOT + body as the host agent does (as the owner of sites/); body prints one JSON line last."""
        container = container or self.app
        owner = docker("exec", container, "stat", "-c", "%u:%g", f"{OE_ROOT}/sites/default/sqlconf.php").stdout
        done = docker("exec", "-i", "-u", owner.strip(), container, "php", input=BOOT + body, check=False)
        assert done.returncode == 0 and done.stdout.strip(), done.stdout + done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def set_globals(self, values: dict[str, str | None]) -> None:
        """Store OpenEMR settings as the host agent does (SMTP_PASS encrypted); None deletes the setting."""
        request = base64.b64encode(json.dumps(values).encode()).decode()
        self.php(f"""
$crypto = new OpenEMR\\Common\\Crypto\\CryptoGen();
foreach (json_decode(base64_decode('{request}'), true) as $name => $value) {{
    sqlStatement("DELETE FROM globals WHERE gl_name = ?", [$name]);
    if ($value !== null) {{
        $stored = $name === 'SMTP_PASS' ? $crypto->encryptStandard($value) : $value;
        sqlStatement("INSERT INTO globals (gl_name, gl_index, gl_value) VALUES (?, 0, ?)", [$name, $stored]);
    }}
}}
echo json_encode(true), "\\n";
""")


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
def stack(base_images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tags = standins.build_all()
    suffix = secrets.token_hex(3)
    network = f"standin-test-{suffix}"
    s = Stack(
        db=f"standin-test-db-{suffix}",
        app=f"standin-test-app-{suffix}",
        manual_app=f"standin-test-manual-{suffix}",
        tls=make_ca(tmp_path_factory.mktemp("standin-ca")),
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
        s.gateway = json.loads(docker("network", "inspect", network).stdout)[0]["IPAM"]["Config"][0]["Gateway"]
        db_env = f"--env=MARIADB_ROOT_PASSWORD={root_pass}"
        docker("run", "-d", f"--name={s.db}", f"--network={network}", "--network-alias=mysql", db_env, tags["mariadb"])
        app_pass = f"--env=MYSQL_PASS={secrets.token_urlsafe(12)}"
        # The test CA as a mail relay's CA bundle is mounted for Shuttle, and the SMTP server's name.
        assert s.tls is not None
        mail = [f"--volume={s.tls.ca}:{CA_IN_APP}:ro", f"--env=SSL_CERT_FILE={CA_IN_APP}"]
        mail.append(f"--add-host={SMTP_NAME}:{s.gateway}")
        docker("run", "-d", f"--name={s.app}", f"--network={network}", *app_env, app_pass, *mail, tags["openemr"])
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


def test_globals_are_stored_and_read_back_through_the_bootstrap(stack: Stack) -> None:
    """As with OpenEMR: settings are rows of `globals`, $GLOBALS holds them (or the defaults) after the
    bootstrap, and SMTP_PASS is stored encrypted with the site keys."""
    show = f"""
$out = [];
foreach ({json.dumps(list(MAIL_GLOBALS))} as $name) {{ $out[$name] = $GLOBALS[$name]; }}
$row = sqlQuery("SELECT gl_value FROM globals WHERE gl_name = ? AND gl_index = 0", ['SMTP_PASS']);
$out['stored_pass'] = $row === false ? false : $row['gl_value'];
$out['pass'] = (new OpenEMR\\Common\\Crypto\\CryptoGen())->decryptStandard($GLOBALS['SMTP_PASS']);
$out['srcdir'] = $GLOBALS['srcdir'];
$out['webserver_root'] = $GLOBALS['webserver_root'];
$out['none'] = sqlQuery("SELECT gl_value FROM globals WHERE gl_name = ?", ['no such setting']);
require_once $GLOBALS['srcdir'] . '/classes/postmaster.php';
$out['configured'] = MyMailer::isConfigured();
echo json_encode($out), "\\n";
"""
    stack.set_globals(dict.fromkeys(MAIL_GLOBALS))
    defaults = stack.php(show)
    assert {name: defaults[name] for name in MAIL_GLOBALS} == {
        "EMAIL_METHOD": "PHPMAIL",
        "SMTP_HOST": "localhost",
        "SMTP_PORT": "25",
        "SMTP_USER": "",
        "SMTP_PASS": "",
        "SMTP_SECURE": "",
        "SMTP_Auth": "0",
        "patient_reminder_sender_email": "",
        "practice_return_email_path": "",
    }
    assert (defaults["stored_pass"], defaults["none"], defaults["configured"]) == (False, False, True)
    assert (defaults["srcdir"], defaults["webserver_root"]) == (f"{OE_ROOT}/library", OE_ROOT)

    settings = {"EMAIL_METHOD": "SMTP", "SMTP_HOST": "relay.example", "SMTP_PORT": "587", "SMTP_SECURE": "tls"}
    settings |= {"SMTP_Auth": "1", "SMTP_USER": "clinic", "patient_reminder_sender_email": "clinic@example.org"}
    stack.set_globals({**settings, "SMTP_PASS": "it's a 'pass' ✓"})
    stored = stack.php(show)
    assert {name: stored[name] for name in settings} == settings
    assert stored["stored_pass"] == stored["SMTP_PASS"] and stored["SMTP_PASS"].startswith("006")
    assert (stored["pass"], stored["configured"]) == ("it's a 'pass' ✓", True)


def test_the_bootstrap_works_on_an_unconfigured_site(stack: Stack) -> None:
    """Before setup (MANUAL_SETUP=yes) there is no database: paths and defaults only."""
    body = "echo json_encode([$GLOBALS['srcdir'], $GLOBALS['EMAIL_METHOD'], function_exists('sqlQuery')]), \"\\n\";"
    assert stack.php(body, container=stack.manual_app) == [f"{OE_ROOT}/library", "PHPMAIL", True]


def test_setup_adds_the_globals_table_to_a_site_set_up_before_it_existed(stack: Stack) -> None:
    sql = 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -N openemr'
    docker("exec", "-i", stack.db, "sh", "-c", sql, input="DROP TABLE globals")
    setup = docker("exec", stack.app, "php", "/usr/local/lib/openemr-standin/setup.php", check=False)
    assert setup.returncode == 0, setup.stderr
    assert "added the globals table" in setup.stderr
    assert "globals" in docker("exec", "-i", stack.db, "sh", "-c", sql, input="SHOW TABLES").stdout.split()


@dataclass
class Relay:
    """The test SMTP relay on this machine: what it accepted, the logins it accepted, its ports."""

    user: str = "clinic@example.org"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12) + " é'\"x")
    messages: list = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    starttls_port: int = 0
    tls_port: int = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope)
        return "250 2.0.0 Ok: queued"

    def authenticator(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (self.user.encode(), self.password.encode())
        if ok:
            self.logins.append(f"{mechanism} {self.user}")
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


@pytest.fixture
def relay(stack: Stack) -> Iterator[Relay]:
    """SMTP on this machine with the test CA's certificate, AUTH required: one port wants STARTTLS (as
    on 587), the other speaks TLS from the first byte (as on 465)."""
    assert stack.tls is not None
    relay = Relay(starttls_port=receivers.free_port(), tls_port=receivers.free_port())
    common = {"hostname": "0.0.0.0", "server_hostname": SMTP_NAME, "authenticator": relay.authenticator}
    starttls = Controller(
        relay,
        port=relay.starttls_port,
        tls_context=stack.tls.server_context(),
        require_starttls=True,
        auth_required=True,
        **common,
    )
    # aiosmtpd only counts STARTTLS as TLS for AUTH; this connection is TLS throughout. Without LOGIN, so
    # that MyMailer authenticates with PLAIN here.
    implicit = Controller(
        relay,
        port=relay.tls_port,
        ssl_context=stack.tls.server_context(),
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN"],
        **common,
    )
    started = []
    try:
        for controller in (starttls, implicit):
            controller.start()
            started.append(controller)
        yield relay
    finally:
        for controller in started:
            controller.stop()


def test_mymailer_sends_a_test_mail_through_the_configured_smtp_relay(stack: Stack, relay: Relay) -> None:
    """The host agent's test mail: MyMailer with the stored settings, over STARTTLS or TLS (certificate
    checked, against the CA that SSL_CERT_FILE names, for SMTP_HOST's name) with AUTH; a wrong password
    fails with the server's answer, an untrusted certificate or another name with the TLS error."""
    stack.set_globals(
        {
            "EMAIL_METHOD": "SMTP",
            "SMTP_HOST": SMTP_NAME,
            "SMTP_PORT": str(relay.starttls_port),
            "SMTP_SECURE": "tls",
            "SMTP_Auth": "1",
            "SMTP_USER": relay.user,
            "SMTP_PASS": relay.password,
            "patient_reminder_sender_email": "clinic@example.org",
        }
    )
    send = f"""
require_once $GLOBALS['srcdir'] . '/classes/postmaster.php';
function send_one(string $subject): array {{
    $mail = new MyMailer();
    $mail->SetFrom($GLOBALS['patient_reminder_sender_email'], 'OpenEMR');
    $mail->AddAddress('someone@example.org', 'Some One');
    $mail->Subject = $subject;
    $mail->Body = "Hello from OpenEMR.\\n.a line with a leading dot\\nCafé\\n";
    $sent = $mail->Send();
    return [$sent, $mail->ErrorInfo];
}}
$crypto = new OpenEMR\\Common\\Crypto\\CryptoGen();
$out = ['configured' => MyMailer::isConfigured(), 'starttls' => send_one('Shuttle test mail ✓')];
$GLOBALS['SMTP_PASS'] = $crypto->encryptStandard('wrong');
$out['wrong_pass'] = send_one('never sent');
$GLOBALS['SMTP_PASS'] = $crypto->encryptStandard(base64_decode('{base64.b64encode(relay.password.encode()).decode()}'));
[$GLOBALS['SMTP_SECURE'], $GLOBALS['SMTP_PORT']] = ['ssl', '{relay.tls_port}'];
$out['tls'] = send_one('over TLS');
$GLOBALS['SMTP_HOST'] = '{stack.gateway}';  // reachable, but not the certificate's name
$out['wrong_name'] = send_one('never sent');
$GLOBALS['SMTP_HOST'] = '{SMTP_NAME}';
putenv('SSL_CERT_FILE');  // the test CA is then trusted no more
$out['untrusted'] = send_one('never sent');
$GLOBALS['EMAIL_METHOD'] = 'PHPMAIL';
$out['phpmail'] = send_one('never sent');
echo json_encode($out), "\\n";
"""
    out = stack.php(send)
    assert out["configured"] is True
    assert (out["starttls"], out["tls"]) == ([True, ""], [True, ""])
    assert relay.logins == [f"LOGIN {relay.user}", f"PLAIN {relay.user}"]
    first, second = relay.messages
    assert (first.mail_from, first.rcpt_tos) == ("clinic@example.org", ["someone@example.org"])
    parsed = email.message_from_bytes(first.content, policy=email.policy.default)
    assert parsed["Subject"] == "Shuttle test mail ✓"
    mailboxes = [(a.display_name, a.addr_spec) for name in ("From", "To") for a in parsed[name].addresses]
    assert mailboxes == [("OpenEMR", "clinic@example.org"), ("Some One", "someone@example.org")]
    assert parsed["Date"] and parsed["Message-ID"]
    assert parsed.get_content().replace("\r\n", "\n") == "Hello from OpenEMR.\n.a line with a leading dot\nCafé\n"
    assert email.message_from_bytes(second.content, policy=email.policy.default)["Subject"] == "over TLS"

    assert out["wrong_pass"] == [False, "SMTP Error: 535 5.7.8 Authentication credentials invalid"]
    assert out["wrong_name"][0] is False and "did not match expected name" in out["wrong_name"][1]
    assert out["untrusted"][0] is False and "certificate verify failed" in out["untrusted"][1]
    assert out["phpmail"][0] is False and "openemr#14074" in out["phpmail"][1]
    for _, error in (out["wrong_pass"], out["wrong_name"], out["untrusted"], out["phpmail"]):
        assert relay.password not in error
    assert len(relay.messages) == 2
