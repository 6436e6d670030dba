"""Bad input of every kind is refused with one clear line and exit code 2 (3 for an unreachable host),
and none of it changes the host it was aimed at."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import Run, run_shuttle, ssh_args

MARKER = "/var/tmp/shuttle-bad-input-marker"
#: Directories a run that got past validation would write to on the host.
WATCHED = "/etc /opt /usr /srv /var/lib /root/.ssh"

# (id, extra CLI args, config, expected exit code, text the message must contain)
CONFIG_CASES = [
    ("tls-mode", [], {"tls": {"mode": "plaintext"}}, "'tls.mode' = 'plaintext'"),
    ("domain", [], {"domain": "not a domain"}, "'domain' = 'not a domain'"),
    ("acme-needs-domain", [], {"tls": {"mode": "acme"}, "acme": {"email": "a@b.org"}}, "'domain' is required"),
    ("acme-needs-email", [], {"tls": {"mode": "acme"}, "domain": "emr.example.org"}, "'acme.email' is required"),
    ("acme-email", [], {"acme": {"email": "nobody"}}, "'acme.email' = 'nobody'"),
    ("acme-url", [], {"acme": {"directory_url": "http://insecure/dir"}}, "'acme.directory_url'"),
    ("provided-needs-cert", [], {"tls": {"mode": "provided"}}, "'tls.cert_path' is required"),
    (
        "provided-missing-file",
        [],
        {"tls": {"mode": "provided", "cert_path": "/nonexistent.pem", "key_path": "/nonexistent.key"}},
        "'tls.cert_path' = '/nonexistent.pem'",
    ),
    ("image-latest", [], {"images": {"openemr": "openemr/openemr:latest"}}, "'images.openemr'"),
    ("image-untagged", [], {"images": {"mariadb": "mariadb"}}, "'images.mariadb' = 'mariadb'"),
    ("image-malformed", [], {"images": {"proxy": "Bad Image!"}}, "'images.proxy'"),
    ("timezone", [], {"timezone": "Mars/Olympus"}, "'timezone' = 'Mars/Olympus'"),
    ("swap-negative", [], {"swap_size_mb": -1}, "'swap_size_mb' = -1"),
    ("ssh-port", [], {"ssh": {"port": 70000}}, "'ssh.port' = 70000"),
    ("ssh-source", [], {"ssh": {"allowed_sources": ["300.1.1.1/8"]}}, "'ssh.allowed_sources.0'"),
    ("ssh-no-source", [], {"ssh": {"allowed_sources": []}}, "'ssh.allowed_sources'"),
    ("ssh-key", [], {"ssh": {"admin_keys": ["not a key"]}}, "'ssh.admin_keys.0' = 'not a key'"),
    ("mode", [], {"mode": "turbo"}, "'mode' = 'turbo'"),
    ("unknown-key", [], {"domian": "emr.example.org"}, "'domian' is not a known setting"),
    ("backup-target", [], {"backup": {"target": "ftp://backup.example.org/x"}}, "'backup.target'"),
    ("backup-s3-bucket", [], {"backup": {"target": "s3:https://s3.example.org/B"}}, "invalid S3 bucket name"),
    ("backup-retention", [], {"backup": {"retention": {"daily": -3}}}, "'backup.retention.daily' = -3"),
    ("backup-schedule", [], {"backup": {"schedule": "daily; rm -rf /"}}, "'backup.schedule'"),
    ("backup-s3-keys", [], {"backup": {"target": "s3:https://s3.example.org/clinic-b"}}, "'backup.s3_access_key_id'"),
    ("admin-user", [], {"admin_user": "a"}, "'admin_user' = 'a'"),
    ("images-bundle", [], {"images_bundle": "/nonexistent/images.tar"}, "'images_bundle' = '/nonexistent/images.tar'"),
]

CLI_CASES = [
    ("unknown-option", ["{target}", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ("bad-target", ["root@@host", "--ssh-key", "{key}"], "target 'root@@host'"),
    ("target-port", ["root@emr.example.org:99999", "--ssh-key", "{key}"], "port 99999"),
    ("bad-ipv6-target", ["root@[fe80::zz]:22"], "target 'root@[fe80::zz]:22'"),
    ("forks", ["{target}", "--forks", "0"], "--forks 0"),
    ("missing-key", ["{target}", "--ssh-key", "/nonexistent/id"], "--ssh-key '/nonexistent/id'"),
    ("missing-config", ["{target}", "--config", "/nonexistent/shuttle.yml"], "config file '/nonexistent/shuttle.yml'"),
]


# `shuttle restore` and `shuttle backup`: refused before the host is contacted.
RESTORE_CASES = [
    ("restore-needs-yes", ["restore", "{target}"], "pass --yes to confirm"),
    ("restore-snapshot", ["restore", "{target}", "--yes", "--snapshot", "x;y"], "--snapshot 'x;y'"),
    ("restore-passphrase", ["restore", "{target}", "--yes", "--passphrase-file", "/nonexistent/p"],
     "--passphrase-file '/nonexistent/p'"),
    ("backup-unknown-option", ["backup", "{target}", "--snapshot", "latest"], "unrecognized arguments"),
]  # fmt: skip


@pytest.fixture(scope="module")
def victim(host_factory):
    """A host every bad input is aimed at; a marker file dates the start of the table."""
    host = host_factory("debian13")
    host.exec(f"touch {MARKER}", check=True)
    yield host
    changed = host.exec(f"find {WATCHED} -xdev -newer {MARKER} -print 2>/dev/null | head -20").stdout.strip()
    assert changed == "", f"bad input changed the host:\n{changed}"


def _assert_refused(run: Run, code: int, text: str) -> None:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == code, (run.returncode, run.stdout[-2000:], run.stderr[-2000:])
    assert any(text in line for line in lines), run.stderr


@pytest.mark.parametrize(("name", "args", "config", "text"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value(victim, tmp_path, name, args, config, text) -> None:
    run = run_shuttle("launch", *ssh_args(victim, tmp_path), *args, config=config, tmp=tmp_path)
    _assert_refused(run, 2, text)
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


@pytest.mark.parametrize(("name", "args", "text"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_cli_argument(victim, tmp_path, name, args, text) -> None:
    argv = [arg.format(target=victim.target, key=victim.key) for arg in args]
    run = run_shuttle("launch", *argv, "--known-hosts", str(tmp_path / "kh"), tmp=tmp_path)
    _assert_refused(run, 2, text)


@pytest.mark.parametrize(("name", "args", "text"), RESTORE_CASES, ids=[c[0] for c in RESTORE_CASES])
def test_bad_backup_or_restore_argument(victim, tmp_path, name, args, text) -> None:
    argv = [arg.format(target=victim.target) for arg in args]
    run = run_shuttle(*argv, "--ssh-key", str(victim.key), "--known-hosts", str(tmp_path / "kh"), tmp=tmp_path)
    _assert_refused(run, 2, text)


# `shuttle bake` and `shuttle seal`: refused before the host is contacted.
IMAGE_CASES = [
    ("seal-needs-yes", ["seal", "{target}"], "machine-id, SSH host keys, logs, shell history, cloud-init state"),
    ("bake-config-value", ["bake", "{target}", "--config", "{bad_config}"], "'timezone' = 'Mars/Olympus'"),
    ("seal-takes-no-config", ["seal", "{target}", "--yes", "--config", "{bad_config}"], "unrecognized arguments"),
]


@pytest.mark.parametrize(("name", "args", "text"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_bad_bake_or_seal_argument(victim, tmp_path, name, args, text) -> None:
    bad_config = tmp_path / "bad.yml"
    bad_config.write_text("timezone: Mars/Olympus\n")
    argv = [arg.format(target=victim.target, bad_config=bad_config) for arg in args]
    run = run_shuttle(*argv, "--ssh-key", str(victim.key), "--known-hosts", str(tmp_path / "kh"), tmp=tmp_path)
    _assert_refused(run, 2, text)
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def _inventory(victim, tmp_path: Path, settings: object) -> Path:
    """An inventory that reaches the victim, with `settings` as its `shuttle_settings`."""
    path = tmp_path / "hosts.yml"
    host = {
        "ansible_host": "127.0.0.1", "ansible_port": victim.ssh_port, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(victim.key), "shuttle_settings": settings,
    }  # fmt: skip
    path.write_text(yaml.safe_dump({"all": {"hosts": {"clinic-a": host}}}))
    return path


# (id, shuttle_settings of the inventory's one host, text the one line must contain)
HOST_SETTINGS_CASES = [
    ("host-timezone", {"timezone": "Mars/Olympus"}, "host 'clinic-a': config field 'timezone' = 'Mars/Olympus'"),
    ("host-admin-user", {"admin_user": "x"}, "host 'clinic-a': config field 'admin_user' = 'x'"),
    ("host-nested", {"ssh": {"port": 0}}, "host 'clinic-a': config field 'ssh.port' = 0"),
    ("host-unknown-key", {"admin": "drsmith"}, "host 'clinic-a': config field 'admin' is not a known setting"),
    ("host-not-a-mapping", "drsmith", "host 'clinic-a': shuttle_settings must be a mapping"),
]


@pytest.mark.parametrize(("name", "settings", "text"), HOST_SETTINGS_CASES, ids=[c[0] for c in HOST_SETTINGS_CASES])
def test_bad_per_host_settings(victim, tmp_path, name, settings, text) -> None:
    run = run_shuttle("launch", "-i", str(_inventory(victim, tmp_path, settings)), "--json", tmp=tmp_path)
    _assert_refused(run, 2, text)
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stdout == ""  # not even a start event: nothing ran


def test_unreadable_inventory(tmp_path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[clinics\nclinic-a\n")
    run = run_shuttle("status", "-i", str(path), tmp=tmp_path)
    _assert_refused(run, 2, f"inventory '{path}': Ansible cannot read it")


def test_bad_yaml(victim, tmp_path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text("tls:\n  mode: [unclosed\n")
    run = run_shuttle("launch", *ssh_args(victim, tmp_path), "--config", str(path), tmp=tmp_path)
    _assert_refused(run, 2, "not valid YAML")


def test_env_override_validated(victim, tmp_path) -> None:
    run = run_shuttle("launch", *ssh_args(victim, tmp_path), tmp=tmp_path, env={"SHUTTLE_SSH__PORT": "0"})
    _assert_refused(run, 2, "'ssh.port' = '0'")


def test_targets_and_inventory_together(victim, tmp_path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    a: {}\n")
    run = run_shuttle("launch", *ssh_args(victim, tmp_path), "-i", str(inventory), tmp=tmp_path)
    _assert_refused(run, 2, "not both")


def test_missing_inventory(tmp_path) -> None:
    run = run_shuttle("launch", "-i", str(tmp_path / "nope.yml"), tmp=tmp_path)
    _assert_refused(run, 2, "inventory")


def test_local_launch_needs_confirmation(tmp_path) -> None:
    # No TTY and no --yes: the machine running the tests must not be hardened by accident.
    run = run_shuttle("launch", tmp=tmp_path)
    _assert_refused(run, 2, "--yes")


def test_unreachable_host_exits_3(tmp_path) -> None:
    run = run_shuttle("launch", "root@127.0.0.1:1", "--known-hosts", str(tmp_path / "kh"), "--json", tmp=tmp_path)
    assert run.returncode == 3, run.stdout[-2000:]
    summary = run.summary
    assert summary["hosts"]["127.0.0.1-1"]["status"] == "unreachable"
    assert "Connection refused" in summary["hosts"]["127.0.0.1-1"]["message"]


def test_wrong_ssh_key_exits_2_naming_the_host(victim, tmp_path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    run = run_shuttle(
        "launch", victim.target, "--ssh-key", str(key), "--known-hosts", str(tmp_path / "kh"), tmp=tmp_path
    )
    assert run.returncode == 2, run.stdout[-2000:]
    name = victim.target.split("@")[1].replace(":", "-")
    assert f"{name}: " in run.stdout and "Permission denied" in run.stdout


@pytest.fixture(scope="module")
def old_debian(host_factory):
    """A host claiming to be Debian 11, which Shuttle does not support."""
    host = host_factory("debian12")
    host.exec(
        'echo 11.11 > /etc/debian_version && sed -i \'s/^VERSION_ID=.*/VERSION_ID="11"/;'
        's/^VERSION=.*/VERSION="11 (bullseye)"/;s/^VERSION_CODENAME=.*/VERSION_CODENAME=bullseye/\' '
        f"/usr/lib/os-release && touch {MARKER}",
        check=True,
    )
    return host


def test_unsupported_os_is_refused_by_preflight(old_debian, tmp_path: Path) -> None:
    run = run_shuttle("launch", *ssh_args(old_debian, tmp_path), tmp=tmp_path)
    assert run.returncode == 2, run.stdout[-3000:]
    assert "unsupported OS Debian 11" in run.stdout
    changed = old_debian.exec(f"find {WATCHED} -xdev -newer {MARKER} -print | head").stdout.strip()
    assert changed == ""
