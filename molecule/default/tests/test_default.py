"""Checks on a host converged by the default scenario (testinfra, over molecule's connection)."""

import json


def test_systemd_is_running(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_sshd_drop_in_is_in_force(host):
    effective = host.run("sshd -T").stdout
    assert "passwordauthentication no" in effective
    assert "permitrootlogin without-password" in effective or "permitrootlogin prohibit-password" in effective


def test_firewall_denies_by_default(host):
    status = host.run("ufw status verbose").stdout
    assert "Status: active" in status
    assert "deny (incoming)" in status


def test_fail2ban_watches_sshd(host):
    assert host.service("fail2ban").is_running
    assert "sshd" in host.run("fail2ban-client status").stdout


def test_stack_serves_openemr_over_https(host):
    page = host.run("curl -sk https://127.0.0.1/interface/login/login.php")
    assert page.rc == 0 and "authUser" in page.stdout
    status = json.loads(host.run("curl -sk https://127.0.0.1/status.php").stdout)
    assert status["configured"] is True and status["admin_exists"] is True


def test_http_redirects_to_https(host):
    code = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/").stdout
    assert code in ("301", "308")


def test_admin_key_from_the_config_is_authorized(host):
    keys = host.file("/root/.ssh/authorized_keys").content_string
    assert "shuttle-test" in keys
