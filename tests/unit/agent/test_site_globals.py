"""OpenEMR's time zone and public address globals, as the settings ask for them (the PHP that sets them runs
against the stand-in in tests/test_stack.py and tests/test_tls.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shuttle_host import database, openemr, site_globals
from shuttle_host.stack import Stack
from tests.unit.conftest import write_settings


def test_the_time_zone_is_always_set_and_the_address_only_with_a_domain(host_settings) -> None:
    stack = dataclasses.replace(host_settings.stack, timezone="America/Chicago", domain="")
    assert site_globals.wanted(stack) == {"gbl_time_zone": "America/Chicago"}
    with_domain = dataclasses.replace(stack, domain="emr.example.org")
    assert site_globals.wanted(with_domain)["site_addr_oath"] == "https://emr.example.org"
    # A first boot's own domain wins over the baked one; a port other than 443 is part of the address.
    other_port = dataclasses.replace(with_domain, https_port=8443)
    assert site_globals.wanted(other_port, "clinic.example.org")["site_addr_oath"] == "https://clinic.example.org:8443"


def test_the_stack_settings_carry_the_configured_time_zone(host_settings) -> None:
    """The role writes the config's zone (its default UTC), which the globals then follow."""
    assert host_settings.stack.timezone == "UTC"


@pytest.mark.parametrize("tables", [0, 42])
def test_an_unconfigured_site_is_left_alone_and_a_restored_one_is_set(
    layout, stack_section, backup_section, monkeypatch, tables: int
) -> None:
    """Empty mode before a restore has no globals to set (nor an OpenEMR to ask); after one, it is a full site."""
    settings = write_settings(
        Path(layout["settings_dir"]), layout, stack={**stack_section, "mode": "empty"}, backup=backup_section
    )
    asked: list[dict[str, str]] = []
    monkeypatch.setattr(database.Database, "has_tables", lambda self: tables > 0)

    class Volumes:
        def volume_path(self, key: str) -> str:
            return f"/volumes/{key}"

    def set_globals(docker, sites, what, values, encrypted=()):  # type: ignore[no-untyped-def]
        asked.append(values)
        return sorted(values)

    monkeypatch.setattr(openemr, "set_globals", set_globals)
    changed = site_globals.configure(Stack(settings, docker=Volumes()))  # type: ignore[arg-type]
    assert (changed, asked) == (([], []) if tables == 0 else (["gbl_time_zone"], [{"gbl_time_zone": "UTC"}]))
