"""The rules both sides apply: `shuttle launch` (the config model) and a first boot (seed) judge alike."""

from __future__ import annotations

import pytest

from shuttle import config
from shuttle.errors import BadInput
from shuttle_host import rules, seed
from shuttle_host.errors import Refused

S3_KEYS = {"s3_access_key_id": "AKIAEXAMPLE", "s3_secret_access_key": "secret"}

# (setting as shuttle.yml nests it, value, whether it is valid)
CASES = [
    ("domain", "emr.example.org", True),
    ("domain", "emr.example.org\n", False),
    ("domain", "EMR.example.org", False),
    ("domain", "emr", False),
    ("domain", "not a domain", False),
    ("domain", "-emr.example.org", False),
    ("domain", "", False),
    ("acme.email", "it@clinic.example.org", True),
    ("acme.email", "it@clinic.example.org\n", False),
    ("acme.email", "nobody", False),
    ("acme.email", "a}{@b.example.org", False),
    ("backup.target", "/srv/backups", True),
    ("backup.target", "/srv/clinic backups", True),
    ("backup.target", "/srv/backups\n", False),
    ("backup.target", "/srv/b\nack up", False),
    ("backup.target", "relative/path", False),
    ("backup.target", "/", False),
    ("backup.target", "ftp://backup.example.org/x", False),
    ("backup.target", "sftp:clinic@backup.example.org:/srv/backups", True),
    ("backup.target", "sftp:clinic@backup.example.org:/srv/backups\n", False),
    ("backup.target", "sftp:-oProxyCommand=touch@backup.example.org:/x", False),
    ("backup.target", "sftp:clinic@-oProxyCommand:/x", False),
    ("backup.target", "sftp:clinic@[2001:db8::5]:/srv", True),
]
S3_CASES = [
    ("s3:https://s3.example.org/clinic-backups", True),
    ("s3:https://s3.example.org/clinic-backups/host-a", True),
    ("s3:http://10.0.0.5:9000/clinic", True),
    ("s3:https://s3.example.org/B", False),
    ("s3:https://s3.example.org/clinic\n", False),
    ("s3:https://s3.example.org/", False),
    ("s3:https://s3.example.org/ab", False),
]


def nested(key: str, value: object) -> dict:
    section, _, name = key.rpartition(".")
    return {section: {name: value}} if section else {key: value}


def controller_accepts(data: dict) -> bool:
    try:
        config.validate(data)
    except BadInput:
        return False
    return True


def first_boot_accepts(data: dict) -> bool:
    try:
        seed.check(seed.flatten(data, "test"), "test")
    except Refused:
        return False
    return True


@pytest.mark.parametrize(("key", "value", "valid"), CASES, ids=[f"{k}={v!r}" for k, v, _ in CASES])
def test_launch_and_first_boot_judge_a_value_alike(key: str, value: str, valid: bool) -> None:
    data = nested(key, value)
    assert controller_accepts(data) is valid
    assert first_boot_accepts(data) is valid


@pytest.mark.parametrize(("target", "valid"), S3_CASES, ids=[t for t, _ in S3_CASES])
def test_s3_targets_are_judged_alike_with_their_keys(target: str, valid: bool) -> None:
    data = {"backup": {"target": target, **S3_KEYS}}
    assert controller_accepts(data) is valid
    assert first_boot_accepts(data) is valid


def test_an_s3_target_without_keys_is_refused_by_both() -> None:
    data = {"backup": {"target": "s3:https://s3.example.org/clinic-backups"}}
    assert not controller_accepts(data)
    assert not first_boot_accepts(data)


@pytest.mark.parametrize("value", [5, ["a"], {"x": 1}])
def test_a_value_that_is_not_a_string_is_refused_by_both(value: object) -> None:
    assert not controller_accepts({"domain": value})
    assert not first_boot_accepts({"domain": value})


def test_a_setting_left_empty_is_unset_for_both() -> None:
    assert controller_accepts({"domain": None, "acme": {"email": None}})
    assert first_boot_accepts({"domain": None, "acme": {"email": None}})
    assert seed.flatten({"domain": None}, "test") == {}


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("$2y$10$" + "a" * 53, True),
        ("$2y$10$" + "a" * 53 + "\n", False),
        ("$2b$12$" + "a" * 53, False),  # Python bcrypt's prefix: OpenEMR refuses it at login
        ("$2a$10$" + "a" * 53, False),
        ("$argon2id$v=19$m=65536,t=4,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", True),
        ("plaintext-password", False),
    ],
)
def test_password_hashes_are_the_ones_openemr_accepts(value: str, valid: bool) -> None:
    assert first_boot_accepts({"admin_password_hash": value}) is valid
    assert _passes(rules.password_hash, value) is valid


def _passes(rule, value: str) -> bool:
    try:
        rule(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("rule", "value", "valid"),
    [
        (rules.timezone, "America/New_York", True),
        (rules.timezone, "America/New_York\n", False),
        (rules.timezone, "Mars/Olympus", False),
        (rules.admin_user, "clinicadmin", True),
        (rules.admin_user, "clinicadmin\n", False),
        (rules.admin_user, "a", False),
        (rules.on_calendar, "*-*-* 02:30:00", True),
        (rules.on_calendar, "daily\n", False),
        (rules.on_calendar, "daily; rm -rf /", False),
        (rules.image_ref, "mariadb:11.4", True),
        (rules.image_ref, "registry.example.org:5000/img", False),
        (rules.image_ref, "mariadb:latest", False),
        (rules.image_ref, "mariadb@sha256:" + "a" * 64, True),
        (rules.image_ref, "mariadb:11.4\n", False),
        (rules.https_url, "https://acme.example.org/dir", True),
        (rules.https_url, "https://acme.example.org/dir\n", False),
        (rules.https_url, "http://acme.example.org/dir", False),
        (rules.ssh_public_key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB admin@laptop", True),
        (rules.ssh_public_key, "not a key", False),
    ],
)
def test_every_rule_matches_the_whole_value(rule, value: str, valid: bool) -> None:
    assert _passes(rule, value) is valid


def test_the_controller_says_which_field_and_what_is_allowed() -> None:
    with pytest.raises(BadInput) as problem:
        config.validate({"backup": {"target": "/srv/b\nx"}})
    assert str(problem.value) == (
        "config field 'backup.target' = '/srv/b\\nx': must be an absolute path, s3:https://HOST/BUCKET[/PATH] "
        "or sftp:USER@HOST:/PATH"
    )


def test_first_boot_says_which_setting_and_hides_secrets() -> None:
    with pytest.raises(Refused) as problem:
        seed.check({"admin_password_hash": "secret-looking"}, "user-data")
    assert "setting 'admin_password_hash' = (hidden): must be a bcrypt" in str(problem.value)
    assert "secret-looking" not in str(problem.value)
