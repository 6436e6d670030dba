"""Bad input of every kind is refused with one clear line and exit code 2, before any host is contacted.

The command line runs in this process with the driver replaced by a stand-in that fails the test if it is
ever called: a refusal that let a run start would show here, and no host (not even this machine, for a
`launch` without targets) can be touched by a case. tests/test_cli.py runs the real `shuttle` process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shuttle import cli, driver

TARGET = "root@192.0.2.10"

RELAY = {"host": "smtp.example.org", "from": "emr@clinic.example.org", "to": ["it@clinic.example.org"]}

# (id, config, text the one line must contain)
CONFIG_CASES = [
    ("tls-mode", {"tls": {"mode": "plaintext"}}, "'tls.mode' = 'plaintext'"),
    ("domain", {"domain": "not a domain"}, "'domain' = 'not a domain'"),
    ("domain-newline", {"domain": "emr.example.org\n"}, "'domain' = 'emr.example.org\\n'"),
    ("acme-needs-domain", {"tls": {"mode": "acme"}, "acme": {"email": "a@b.org"}}, "'domain' is required"),
    ("acme-needs-email", {"tls": {"mode": "acme"}, "domain": "emr.example.org"}, "'acme.email' is required"),
    ("acme-email", {"acme": {"email": "nobody"}}, "'acme.email' = 'nobody'"),
    ("acme-url", {"acme": {"directory_url": "http://insecure/dir"}}, "'acme.directory_url'"),
    ("provided-needs-cert", {"tls": {"mode": "provided"}}, "'tls.cert_path' is required"),
    (
        "provided-missing-file",
        {"tls": {"mode": "provided", "cert_path": "/nonexistent.pem", "key_path": "/nonexistent.key"}},
        "'tls.cert_path' = '/nonexistent.pem'",
    ),
    ("image-latest", {"images": {"openemr": "openemr/openemr:latest"}}, "'images.openemr'"),
    ("image-untagged", {"images": {"mariadb": "mariadb"}}, "'images.mariadb' = 'mariadb'"),
    ("image-malformed", {"images": {"proxy": "Bad Image!"}}, "'images.proxy'"),
    ("backup-dotdot", {"backup": {"target": "/srv/backups/../../etc"}}, "without '..'"),
    ("backup-in-docker", {"backup": {"target": "/var/lib/docker/volumes/backups"}}, "is inside /var/lib/docker"),
    ("backup-in-config", {"backup": {"target": "/etc/shuttle"}}, "is inside /etc/shuttle"),
    ("trusted-sources", {"trusted_sources": ["the office"]}, "'trusted_sources.0' = 'the office'"),
    ("openemr-known-bad", {"images": {"openemr": "openemr/openemr:8.2.0"}}, "which is known bad"),
    ("openemr-never-released", {"images": {"openemr": "openemr/openemr:8.1.0-2026-06-04"}}, "never released"),
    ("timezone", {"timezone": "Mars/Olympus"}, "'timezone' = 'Mars/Olympus'"),
    ("swap-negative", {"swap_size_mb": -1}, "'swap_size_mb' = -1"),
    ("ssh-port", {"ssh": {"port": 70000}}, "'ssh.port' = 70000"),
    ("ssh-source", {"ssh": {"allowed_sources": ["300.1.1.1/8"]}}, "'ssh.allowed_sources.0'"),
    ("ssh-no-source", {"ssh": {"allowed_sources": []}}, "'ssh.allowed_sources'"),
    ("ssh-key", {"ssh": {"admin_keys": ["not a key"]}}, "'ssh.admin_keys.0' = 'not a key'"),
    ("mode", {"mode": "turbo"}, "'mode' = 'turbo'"),
    ("unknown-key", {"domian": "emr.example.org"}, "'domian' is not a known setting"),
    ("backup-target", {"backup": {"target": "ftp://backup.example.org/x"}}, "'backup.target'"),
    ("backup-s3-bucket", {"backup": {"target": "s3:https://s3.example.org/B"}}, "invalid S3 bucket name"),
    ("backup-retention", {"backup": {"retention": {"daily": -3}}}, "'backup.retention.daily' = -3"),
    ("backup-schedule", {"backup": {"schedule": "daily; rm -rf /"}}, "'backup.schedule'"),
    ("drill-schedule", {"backup": {"drill_schedule": "monthly; reboot"}}, "'backup.drill_schedule'"),
    ("backup-s3-keys", {"backup": {"target": "s3:https://s3.example.org/clinic-b"}}, "'backup.s3_access_key_id'"),
    ("admin-user", {"admin_user": "a"}, "'admin_user' = 'a'"),
    ("images-bundle", {"images_bundle": "/nonexistent/images.tar"}, "'images_bundle' = '/nonexistent/images.tar'"),
    ("smtp-port", {"alerts": {"email": [{**RELAY, "port": 70000}]}}, "'alerts.email.0.port' = 70000"),
    ("webhook-http", {"alerts": {"webhooks": [{"url": "http://hooks.example.org/x"}]}}, "'alerts.webhooks.0.url'"),
    (
        "webhook-http-public-ip",
        {"alerts": {"webhooks": [{"url": "http://93.184.216.34/x", "allow_private_http": True}]}},
        "http:// only to an IP address on a private network",
    ),
    ("no-recipient", {"alerts": {"email": [{**RELAY, "to": []}]}}, "'alerts.email.0.to' = []"),
    ("unknown-check", {"alerts": {"checks": ["disk", "uptime"]}}, "'alerts.checks.1' = 'uptime'"),
    ("disk-threshold", {"alerts": {"disk_free": {"percent": 150}}}, "'alerts.disk_free.percent' = 150"),
    ("alert-interval", {"alerts": {"interval": "5 fortnights"}}, "'alerts.interval' = '5 fortnights'"),
    (
        "smtp-password-shown-masked",
        {"alerts": {"email": [{**RELAY, "password": "hunter2-secret"}]}},
        "'alerts.email.0.user' is required when a password is given",
    ),
]

# (id, argv, text)
CLI_CASES = [
    ("unknown-option", ["launch", TARGET, "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ("bad-target", ["launch", "root@@host"], "target 'root@@host'"),
    ("target-port", ["launch", "root@emr.example.org:99999"], "port 99999"),
    ("bad-ipv6-target", ["launch", "root@[fe80::zz]:22"], "target 'root@[fe80::zz]:22'"),
    ("forks", ["launch", TARGET, "--forks", "0"], "--forks 0"),
    ("missing-key", ["launch", TARGET, "--ssh-key", "/nonexistent/id"], "--ssh-key '/nonexistent/id'"),
    ("missing-config", ["launch", TARGET, "--config", "/nonexistent/shuttle.yml"], "config file '/nonexistent/"),
    ("restore-needs-yes", ["restore", TARGET], "pass --yes to confirm"),
    ("restore-snapshot", ["restore", TARGET, "--yes", "--snapshot", "x;y"], "--snapshot 'x;y'"),
    ("restore-passphrase", ["restore", TARGET, "--yes", "--passphrase-file", "/nonexistent/p"],
     "--passphrase-file '/nonexistent/p'"),
    ("backup-unknown-option", ["backup", TARGET, "--snapshot", "latest"], "unrecognized arguments"),
    ("drill-snapshot", ["drill", TARGET, "--snapshot", "x;y"], "--snapshot 'x;y'"),
    ("seal-needs-yes", ["seal", TARGET], "machine-id, SSH host keys, the authorized SSH keys (unless --keep"),
    ("seal-takes-no-config", ["seal", TARGET, "--yes", "--config", "x.yml"], "unrecognized arguments"),
    ("local-launch-needs-yes", ["launch"], "pass --yes to confirm"),
    ("local-bake-needs-yes", ["bake"], "pass --yes to confirm"),
]  # fmt: skip

# (id, shuttle_settings of the inventory's one host, text)
HOST_SETTINGS_CASES = [
    ("host-timezone", {"timezone": "Mars/Olympus"}, "host 'clinic-a': config field 'timezone' = 'Mars/Olympus'"),
    ("host-admin-user", {"admin_user": "x"}, "host 'clinic-a': config field 'admin_user' = 'x'"),
    ("host-nested", {"ssh": {"port": 0}}, "host 'clinic-a': config field 'ssh.port' = 0"),
    ("host-unknown-key", {"admin": "drsmith"}, "host 'clinic-a': config field 'admin' is not a known setting"),
    ("host-not-a-mapping", "drsmith", "host 'clinic-a': shuttle_settings must be a mapping"),
]


@pytest.fixture(autouse=True)
def no_run(monkeypatch, tmp_path: Path) -> None:
    """Any case that got as far as running a playbook fails here, before Ansible starts."""

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("a bad input reached the driver: a playbook would have run")

    monkeypatch.setattr(driver, "run", refuse)
    monkeypatch.setenv("SHUTTLE_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.chdir(tmp_path)


def refused(capsys, argv: list[str], text: str) -> str:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and text in lines[0], err
    return lines[0]


@pytest.mark.parametrize(("name", "config", "text"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value(capsys, tmp_path: Path, name: str, config: dict, text: str) -> None:
    path = tmp_path / "shuttle.yml"
    path.write_text(yaml.safe_dump(config))
    line = refused(capsys, ["launch", TARGET, "--config", str(path)], text)
    assert line.startswith("shuttle: config field ")


@pytest.mark.parametrize(("name", "argv", "text"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_line(capsys, name: str, argv: list[str], text: str) -> None:
    refused(capsys, argv, text)


@pytest.mark.parametrize(("name", "settings", "text"), HOST_SETTINGS_CASES, ids=[c[0] for c in HOST_SETTINGS_CASES])
def test_bad_per_host_settings(capsys, tmp_path: Path, name: str, settings: object, text: str) -> None:
    inventory = tmp_path / "hosts.yml"
    host = {"ansible_host": "192.0.2.10", "ansible_user": "root", "shuttle_settings": settings}
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"clinic-a": host}}}))
    refused(capsys, ["launch", "-i", str(inventory), "--json"], text)
    assert capsys.readouterr().out == ""  # not even a start event


def test_a_bad_bake_config_is_refused(capsys, tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("timezone: Mars/Olympus\n")
    refused(capsys, ["bake", TARGET, "--config", str(path)], "'timezone' = 'Mars/Olympus'")


def test_an_unreadable_inventory(capsys, tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[clinics\nclinic-a\n")
    refused(capsys, ["status", "-i", str(path)], f"inventory '{path}': Ansible cannot read it")


def test_a_missing_inventory_and_targets_with_an_inventory(capsys, tmp_path: Path) -> None:
    refused(capsys, ["launch", "-i", str(tmp_path / "nope.yml")], "no such file")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    a: {}\n")
    refused(capsys, ["launch", TARGET, "-i", str(inventory)], "not both")


def test_bad_yaml(capsys, tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text("tls:\n  mode: [unclosed\n")
    refused(capsys, ["launch", TARGET, "--config", str(path)], "not valid YAML")


def test_an_environment_override_is_validated(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SHUTTLE_SSH__PORT", "0")
    refused(capsys, ["launch", TARGET], "'ssh.port' = '0'")


def test_a_confirmed_local_launch_runs_on_this_host_over_a_local_connection(monkeypatch) -> None:
    """The guard above is what stops a local launch: with --yes the run goes to this host, locally."""
    seen: dict = {}

    def record(verb: str, **kwargs: object) -> object:
        seen.update(verb=verb, **kwargs)
        from shuttle.results import RunResult  # noqa: PLC0415

        return RunResult(verb=verb)

    monkeypatch.setattr(driver, "run", record)
    assert cli.main(["launch", "--yes", "--json"]) == 0
    assert seen["verb"] == "launch"
    assert seen["inventory"]["all"]["hosts"]["localhost"]["ansible_connection"] == "local"


@pytest.mark.parametrize(("flag", "kept"), [([], False), (["--keep-authorized-keys"], True)])
def test_seal_removes_the_authorized_keys_unless_told_to_keep_them(monkeypatch, flag: list[str], kept: bool) -> None:
    seen: dict = {}

    def record(verb: str, **kwargs: object) -> object:
        seen.update(verb=verb, **kwargs)
        from shuttle.results import RunResult  # noqa: PLC0415

        return RunResult(verb=verb)

    monkeypatch.setattr(driver, "run", record)
    assert cli.main(["seal", TARGET, "--yes", "--json", *flag]) == 0
    assert seen["verb"] == "seal" and seen["extravars"] == {"shuttle_seal_keep_authorized_keys": kept}
