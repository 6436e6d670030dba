"""An instance's own settings: where they come from, which wins, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shuttle_host import seed
from shuttle_host.errors import Refused

HASH = "$2y$10$" + "a" * 53


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_user_data_wins_over_the_dropped_file(tmp_path: Path) -> None:
    dropped = write(tmp_path / "firstboot.yml", yaml.safe_dump({"domain": "dropped.example.org"}))
    data = {"packages": ["htop"], "shuttle": {"domain": "user-data.example.org", "admin_password_hash": HASH}}
    user_data = write(tmp_path / "user-data.txt", "#cloud-config\n" + yaml.safe_dump(data))
    chosen, source = seed.read(dropped, user_data)
    assert chosen == {"domain": "user-data.example.org", "admin_password_hash": HASH}
    assert source == f"{dropped} + {user_data}"


def test_a_backup_target_comes_with_its_own_credentials(tmp_path: Path) -> None:
    s3 = {"target": "s3:https://s3.example.org/clinic-a", "s3_access_key_id": "AKIA1", "s3_secret_access_key": "x"}
    dropped = write(tmp_path / "firstboot.yml", yaml.safe_dump({"backup": s3}))
    user_data = write(tmp_path / "user-data.txt", "#cloud-config\n" + yaml.safe_dump(
        {"shuttle": {"backup": {"target": "/srv/backups"}}}))  # fmt: skip
    chosen, _ = seed.read(dropped, user_data)
    assert chosen == {"backup.target": "/srv/backups"}


def test_nothing_given_means_the_baked_settings(tmp_path: Path) -> None:
    write(tmp_path / "user-data.txt", "#!/bin/sh\necho a shell script is not ours\n")
    assert seed.read(tmp_path / "none.yml", tmp_path / "user-data.txt") == ({}, "baked settings")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("domian: emr.example.org\n", "unknown setting 'domian'"),
        ("domain: [a, b]\n", "setting 'domain' must be a non-empty string"),
        ("domain: 'not a domain'\n", "setting 'domain' = 'not a domain': must be a fully qualified DNS name"),
        ("- a list\n", "expected a mapping of settings"),
        ("domain: [unclosed\n", "not valid YAML"),
        (
            "backup: {target: 's3:https://s3.example.org/clinic'}\n",
            "an s3: backup.target needs backup.s3_access_key_id",
        ),
    ],
)
def test_a_bad_dropped_file_is_refused_naming_the_file_and_setting(tmp_path: Path, text: str, problem: str) -> None:
    dropped = write(tmp_path / "firstboot.yml", text)
    with pytest.raises(Refused) as refused:
        seed.read(dropped, tmp_path / "no-user-data")
    assert str(refused.value).startswith(str(dropped)) and problem in str(refused.value)


def test_user_data_whose_shuttle_key_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    user_data = write(tmp_path / "user-data.txt", "#cloud-config\nshuttle: yes-please\n")
    with pytest.raises(Refused, match="'shuttle' must be a mapping"):
        seed.read(tmp_path / "none.yml", user_data)
