"""Checks on a host converged by the default scenario (testinfra, over molecule's connection)."""


def test_preflight_left_the_host_alone(host):
    # Preflight only reads; nothing of Shuttle's exists until the later roles run.
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] in ("12", "13")


def test_systemd_is_running(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state
