"""`status` reports what the host runs and reads no secret from container environments."""

from __future__ import annotations

from pathlib import Path

from shuttle_host import docker, status


def test_the_admin_is_the_only_value_read_from_the_app_environment() -> None:
    info = {"Config": {"Env": ["OE_PASS=hunter2", "OE_USER=drsmith", "MYSQL_ROOT_PASS=x"]}}
    assert status.admin_user(info) == "drsmith"
    assert status.admin_user(None) is None


def test_the_os_name_comes_from_os_release(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 13 (trixie)"\n')
    assert status.os_name(release) == "Debian GNU/Linux 13 (trixie)"


def containers() -> dict:
    def info(name: str, state: str, health: str | None) -> dict:
        status = {"Status": state, **({"Health": {"Status": health}} if health else {})}
        env = ["OE_USER=clinicadmin", "OE_PASS=secret"]
        return {"Id": name, "RestartCount": 0, "State": status, "Config": {"Image": f"img/{name}", "Env": env}}

    return {"db": info("db", "running", "healthy"), "app": info("app", "exited", None)}


def test_a_report_names_the_service_that_is_not_ready(host_settings, monkeypatch) -> None:
    layout = host_settings.layout
    layout.compose_file.parent.mkdir(parents=True)
    layout.compose_file.write_text("services: {}\n")
    monkeypatch.setattr(status, "_quiet", lambda *argv: "26.1.5")
    monkeypatch.setattr(docker.Docker, "compose_program", ["docker", "compose"])
    monkeypatch.setattr(docker.Docker, "containers", lambda self: containers())
    report = status.report(host_settings)
    assert report["ready"] is False
    assert report["problem"] == (
        "service app is exited (health: none, restarts: 0); service proxy is missing (health: none, restarts: 0)"
    )
    assert report["services"]["db"]["ready"] is True and report["services"]["proxy"]["state"] == "missing"
    assert report["admin_user"] == "clinicadmin" and report["images"]["db"] == "img/db"
    assert report["openemr"] == {"version": None, "docker_version": None}  # the app is not running
    assert "secret" not in repr(report)


def test_a_host_without_the_stack_says_so(host_settings, monkeypatch) -> None:
    monkeypatch.setattr(status, "_quiet", lambda *argv: None)
    report = status.report(host_settings)
    assert report["ready"] is False and "docker-compose.yml is missing" in report["problem"]


def test_the_time_zone_is_the_one_localtime_names(tmp_path: Path) -> None:
    zone = tmp_path / "usr/share/zoneinfo/America/Chicago"
    zone.parent.mkdir(parents=True)
    zone.write_text("TZif")
    (tmp_path / "localtime").symlink_to(zone)
    assert status.time_zone(tmp_path / "localtime") == "America/Chicago"


def test_the_release_is_read_from_openemrs_version_file() -> None:
    """The shape of OpenEMR's version.php: a patch release adds its fourth number, a plain release does not."""
    version_php = "<?php\n$v_major = '8';\n$v_minor = '0';\n$v_patch = '0';\n$v_tag = '';\n$v_realpatch = '3';\n"
    assert status.release(version_php) == "8.0.0.3"
    assert status.release(version_php.replace("'3'", "'0'")) == "8.0.0"
    assert status.release("<?php // not a version file\n") is None
