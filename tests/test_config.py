"""The config model: defaults, environment overrides, the generated schema."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shuttle import config
from shuttle.errors import BadInput


def test_defaults_are_valid_and_pin_every_image() -> None:
    settings = config.load(None)
    assert settings.mode == "full"
    assert settings.tls.mode == "self-signed"
    for reference in settings.images.model_dump().values():
        assert ":" in reference and not reference.endswith(":latest")


def test_environment_overrides_the_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "shuttle.yml"
    path.write_text("timezone: Europe/Berlin\nssh:\n  port: 2222\n")
    monkeypatch.setenv("SHUTTLE_SSH__PORT", "2200")
    settings = config.load(path)
    assert settings.timezone == "Europe/Berlin"
    assert settings.ssh.port == 2200


def test_bad_environment_value_names_the_field(monkeypatch) -> None:
    monkeypatch.setenv("SHUTTLE_TLS__MODE", "plaintext")
    with pytest.raises(BadInput, match=r"'tls.mode' = 'plaintext'"):
        config.load(None)


def test_secret_value_is_never_echoed_in_errors(tmp_path) -> None:
    path = tmp_path / "shuttle.yml"
    path.write_text("backup:\n  s3_secret_access_key: [sentinel-7f3a]\n")
    with pytest.raises(BadInput) as caught:
        config.load(path)
    assert "'backup.s3_secret_access_key' = ***" in str(caught.value)
    assert "sentinel-7f3a" not in str(caught.value)


def test_extravars_reveal_secrets_only_there(tmp_path) -> None:
    path = tmp_path / "shuttle.yml"
    path.write_text(
        "backup:\n  target: s3:https://s3.example.org/bucket\n  s3_access_key_id: AKIA1\n"
        "  s3_secret_access_key: hunter2-sentinel\n"
    )
    settings = config.load(path)
    assert "hunter2-sentinel" not in repr(settings)
    assert settings.to_extravars()["backup"]["s3_secret_access_key"] == "hunter2-sentinel"


def test_schema_command_prints_the_models_schema() -> None:
    out = subprocess.run([sys.executable, "-m", "shuttle", "schema"], capture_output=True, text=True, check=True).stdout
    schema = json.loads(out)
    assert schema == config.schema()
    assert {"domain", "tls", "images", "ssh", "backup", "mode", "images_bundle"} <= set(schema["properties"])
