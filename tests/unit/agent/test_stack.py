"""The stack's secrets and env file, made on the host, and how a start reports what it changed."""

from __future__ import annotations

import stat
from pathlib import Path

from shuttle_host import database, files
from shuttle_host.stack import Stack
from tests.unit.conftest import write_settings


class FakeDocker:
    """Containers whose ID and start time change when `compose up` recreates them."""

    def __init__(self, recreate: bool) -> None:
        self.recreate = recreate
        self.generation = 0
        self.calls: list[tuple[str, ...]] = []

    def containers(self) -> dict:
        return {"db": {"Id": f"db-{self.generation}", "State": {"StartedAt": f"t{self.generation}"}}}

    def compose(self, *args: str, what: str, timeout: float | None = None) -> str:
        self.calls.append(args)
        if self.recreate:
            self.generation += 1
        return ""


def test_secrets_are_made_once_and_the_env_file_holds_them(host_settings) -> None:
    stack = Stack(host_settings, docker=FakeDocker(False))  # type: ignore[arg-type]
    assert sorted(stack.ensure_secrets()) == ["db-password", "db-root-password", "openemr-admin-password"]
    assert stack.ensure_secrets() == []
    layout = host_settings.layout
    env = layout.env_file
    env.parent.mkdir(parents=True)
    assert stack.write_env() is True
    text = env.read_text()
    assert f"COMPOSE_PROJECT_NAME={layout.project}\n" in text
    assert f"DB_ROOT_PASSWORD={files.read_secret(layout.secret('db_root'))}\n" in text
    assert f"OE_ADMIN_PASSWORD={files.read_secret(layout.secret('admin'))}\n" in text
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stack.write_env() is False  # a second run changes nothing


def test_a_restored_secret_rewrites_the_env_file(host_settings) -> None:
    stack = Stack(host_settings, docker=FakeDocker(False))  # type: ignore[arg-type]
    stack.ensure_secrets()
    Path(host_settings.layout.compose_dir).mkdir(parents=True)
    stack.write_env()
    host_settings.layout.secret("db").write_text("restored-from-old-host\n")
    assert stack.write_env() is True
    assert "DB_PASSWORD=restored-from-old-host\n" in host_settings.layout.env_file.read_text()


def test_up_reports_a_change_only_when_a_container_was_created_or_started(host_settings) -> None:
    assert Stack(host_settings, docker=FakeDocker(True)).up() is True  # type: ignore[arg-type]
    steady = FakeDocker(False)
    assert Stack(host_settings, docker=steady).up() is False  # type: ignore[arg-type]
    assert steady.calls == [("up", "--detach", "--remove-orphans")]


def test_the_url_is_the_domain_or_the_hosts_own_address(host_settings, monkeypatch) -> None:
    from shuttle_host import netinfo  # noqa: PLC0415

    stack = Stack(host_settings, docker=FakeDocker(False))  # type: ignore[arg-type]
    monkeypatch.setattr(netinfo, "addresses", lambda: ["192.0.2.10", "10.0.0.3"])
    assert stack.url() == "https://192.0.2.10/"
    assert stack.url("emr.example.org") == "https://emr.example.org/"
    monkeypatch.setattr(netinfo, "addresses", lambda: [])
    monkeypatch.setattr(netinfo, "hostname", lambda: "clinic-vm")
    assert stack.url() == "https://clinic-vm/"


def test_the_hosts_addresses_leave_out_loopback_and_docker(tmp_path: Path) -> None:
    from shuttle_host import netinfo  # noqa: PLC0415

    for name in ("lo", "docker0", "br-1234", "veth99", "eth0"):
        (tmp_path / name).mkdir()
    # eth0 does not exist in this process's network namespace by that name: nothing is read for it either.
    assert all(not address.startswith("127.") for address in netinfo.addresses(str(tmp_path)))


def test_empty_mode_leaves_setup_manual_only_until_the_database_has_tables(
    host_root, layout, stack_section, backup_section, monkeypatch
) -> None:
    """After `launch --empty` and a restore, OpenEMR must run as a full site (MANUAL_SETUP off), also when the
    launch is run again with --empty."""
    settings = write_settings(
        Path(layout["settings_dir"]), layout, stack={**stack_section, "mode": "empty"}, backup=backup_section
    )
    stack = Stack(settings, docker=FakeDocker(False))  # type: ignore[arg-type]
    stack.ensure_secrets()
    tables: list[int] = []

    def has_tables(self: database.Database) -> bool:
        if not tables:
            raise database.Failed("the db container of project shuttle is not running")
        return tables[-1] > 0

    monkeypatch.setattr(database.Database, "has_tables", has_tables)
    assert "MANUAL_SETUP=yes\n" in stack.env_text()  # a first launch: no database container yet
    tables.append(0)
    assert "MANUAL_SETUP=yes\n" in stack.env_text()  # running, still empty
    tables.append(120)
    assert "MANUAL_SETUP=no\n" in stack.env_text()  # restored


def test_full_mode_never_asks_for_manual_setup(host_settings) -> None:
    stack = Stack(host_settings, docker=FakeDocker(False))  # type: ignore[arg-type]
    stack.ensure_secrets()
    assert "MANUAL_SETUP=no\n" in stack.env_text()
