"""The settings the roles write are what the agent reads, and a bad file is one clear line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shuttle_host import settings
from shuttle_host.errors import Refused
from tests.unit.conftest import render, wiring_layout, write_settings


def test_every_role_writes_a_section_the_agent_accepts() -> None:
    layout = wiring_layout()
    settings.parse("layout", layout, "layout.yml")
    settings.parse("stack", json.loads(render("stack", "settings.json.j2", {"stack_layout": layout})), "stack")
    backup = render("backup", "settings.json.j2", {"backup_layout": layout, "backup_target": "/srv/b"})
    settings.parse("backup", json.loads(backup), "backup")
    firstboot = render("firstboot", "settings.json.j2", {"firstboot_layout": layout})
    settings.parse("firstboot", json.loads(firstboot), "firstboot")


def test_a_missing_section_says_which_file_and_what_to_run(tmp_path: Path) -> None:
    loaded = write_settings(tmp_path, wiring_layout())
    with pytest.raises(Refused, match=rf"backups are not set up: {tmp_path}/backup.json is missing"):
        _ = loaded.backup


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("project"), "missing project"),
        (lambda d: d.update(projcet="x"), "unknown projcet"),
        (lambda d: d.update(units="shuttle-backup"), "field 'units' = 'shuttle-backup' is not a dict[str, str]"),
    ],
)
def test_a_layout_that_does_not_fit_is_refused(tmp_path: Path, change, problem: str) -> None:
    layout = wiring_layout()
    change(layout)
    (tmp_path / "layout.json").write_text(json.dumps(layout))
    with pytest.raises(Refused, match=re.escape(problem)):
        settings.load(tmp_path)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "layout.json").write_text("{not json")
    with pytest.raises(Refused, match="cannot be read as JSON"):
        settings.load(tmp_path)


def test_layout_helpers_name_files_and_volumes(host_settings) -> None:
    layout = host_settings.layout
    assert layout.secret("db_root").name == "db-root-password"
    assert layout.volume("sites") == "shuttle_openemr-sites"
    assert layout.env_file.name == ".env" and layout.compose_file.name == "docker-compose.yml"
