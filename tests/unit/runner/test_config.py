"""The config model: defaults, environment overrides, the generated schema, per-host settings from an inventory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from shuttle import api, config, driver, inventory, targets
from shuttle.errors import BadInput


def test_defaults_are_valid_and_pin_every_image() -> None:
    settings = config.load(None)
    assert settings.mode == "full"
    assert settings.tls.mode == "self-signed"
    for reference in settings.images.model_dump().values():
        name, _, tag = reference.rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest"), reference  # a tag, not a registry port


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


INVENTORY = """\
all:
  vars:
    ansible_user: root
    shuttle_settings: {timezone: Europe/Berlin}
  children:
    us:
      vars:
        shuttle_settings: {timezone: America/Chicago, ssh: {port: 2222}}
      hosts:
        clinic-a: {ansible_port: 2201}
        clinic-b:
          shuttle_settings: {admin_user: drsmith, ssh: {admin_keys: ["ssh-ed25519 AAAAC3Nza test"]}}
      children:
        us_west:
          hosts:
            clinic-c:
  hosts:
    clinic-d:
"""


def _expand(*paths):
    with driver.private_dir() as private:
        return inventory.expand(list(paths), driver.ansible_env(private))


def test_per_host_settings_merge_onto_the_config_by_ansible_precedence(tmp_path) -> None:
    path = tmp_path / "fleet.yml"
    path.write_text(INVENTORY)
    hosts = _expand(path)
    data = {"admin_user": "clinicadmin", "ssh": {"allowed_sources": ["198.51.100.0/24"]}}
    settings = api.host_settings(hosts, data, config.validate(data), {"mode": "empty"})
    a, b, c, d = (settings[name] for name in ("clinic-a", "clinic-b", "clinic-c", "clinic-d"))
    # The group's settings reach its hosts and its child group's; sections merge key by key.
    assert (a.timezone, a.admin_user, a.ssh.port, a.ssh.allowed_sources) == (
        "America/Chicago", "clinicadmin", 2222, ["198.51.100.0/24"],
    )  # fmt: skip
    assert (c.timezone, c.ssh.port) == ("America/Chicago", 2222)
    # A host's own shuttle_settings replaces its group's (Ansible's precedence), then merges onto the config.
    assert (b.admin_user, b.timezone, b.ssh.port, b.ssh.admin_keys) == (
        "drsmith",
        "UTC",
        22,
        ["ssh-ed25519 AAAAC3Nza test"],
    )
    assert d.timezone == "Europe/Berlin"
    assert {s.mode for s in settings.values()} == {"empty"}  # the command's overrides win


def test_the_run_sees_the_users_inventory_plus_each_hosts_validated_settings(tmp_path) -> None:
    path = tmp_path / "fleet.yml"
    # A `shuttle` variable of the user's is replaced by the validated settings, at host and group level.
    path.write_text(INVENTORY.replace("    clinic-d:\n", "    clinic-d: {shuttle: stale}\n"))
    hosts = _expand(path)
    files, generated = hosts.sources({name: {"shuttle": {"timezone": name}} for name in hosts.hosts})
    assert files == [path]
    generated_path = tmp_path / "generated.yml"
    generated_path.write_text(yaml.safe_dump(generated))
    seen = _expand(*files, generated_path)
    assert seen.hosts.keys() == hosts.hosts.keys()
    for name, variables in hosts.hosts.items():
        assert seen.hosts[name] == {**variables, "shuttle": {"timezone": name}}
    assert seen.hosts["clinic-a"]["ansible_port"] == 2201  # the user's own variables are untouched


def test_target_lists_get_one_generated_inventory(tmp_path) -> None:
    hosts = inventory.from_mapping(targets.inventory_for(["root@emr.example.org:2222", "admin@10.0.0.5"]))
    files, generated = hosts.sources({"emr.example.org-2222": {"shuttle": {"mode": "full"}}})
    assert files == []
    assert generated["all"]["hosts"]["emr.example.org-2222"] == {
        "ansible_host": "emr.example.org", "ansible_user": "root", "ansible_port": 2222, "shuttle": {"mode": "full"},
    }  # fmt: skip
    assert generated["all"]["hosts"]["10.0.0.5"]["ansible_user"] == "admin"


def test_bad_per_host_settings_are_all_reported_naming_each_host(tmp_path) -> None:
    path = tmp_path / "fleet.yml"
    path.write_text(
        "all:\n  hosts:\n    a: {shuttle_settings: {timezone: Mars/Olympus}}\n    b: {shuttle_settings: [1]}\n"
        "    c: {shuttle_settings: {backup: {target: s3:https://s3.example.org/bucket}}}\n"
    )
    with pytest.raises(BadInput) as problem:
        api.host_settings(_expand(path), {}, config.validate({}), {})
    assert str(problem.value).splitlines() == [
        "host 'a': config field 'timezone' = 'Mars/Olympus': must be an IANA time zone name such as UTC or "
        "America/New_York",
        "host 'b': shuttle_settings must be a mapping of settings (as in shuttle.yml), not list",
        "host 'c': config field 'backup.s3_access_key_id' and backup.s3_secret_access_key are required for an "
        "s3: target",
    ]


def test_the_recovery_key_is_made_once_root_only(tmp_path) -> None:

    cfg = config.validate({"backup": {"target": "/srv/backups"}})
    path = api.recovery_key_file("clinic-a", cfg)
    assert path is not None and path.name == "clinic-a.key"
    key = tmp_path / "keys" / "fleet.key"
    assert api.make_recovery_key(key) is True
    first = key.read_text()
    assert api.make_recovery_key(key) is False and key.read_text() == first, "a second launch replaced the key"
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    assert api.recovery_key_file("clinic-a", config.validate({})) is None, "no target, no key"
