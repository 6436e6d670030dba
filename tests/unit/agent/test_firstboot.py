"""The first boot's pieces that need no host: placeholders, the Caddyfile it chooses, its messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shuttle_host import firstboot
from shuttle_host.errors import Failed
from tests.unit.conftest import render


def test_placeholders_are_filled_and_none_may_be_left() -> None:
    assert firstboot.fill("site @@domain@@ {", {"domain": "emr.example.org"}) == "site emr.example.org {"
    with pytest.raises(Failed, match="placeholders without a value: @@acme-email@@"):
        firstboot.fill("email @@acme-email@@", {"domain": "x"})


@pytest.fixture
def variants(host_settings, layout) -> Path:
    """The Caddyfile variants as the stack role renders them at bake time."""
    directory = Path(layout["firstboot_dir"])
    directory.mkdir(parents=True)
    for name, mode in (("acme", "acme"), ("internal", "self-signed")):
        text = render("stack", "Caddyfile.j2", {
            "stack_layout": layout, "stack_domain": "@@domain@@", "stack_tls_mode": mode,
            "stack_acme_email": "@@acme-email@@",
        })  # fmt: skip
        (directory / f"Caddyfile.{name}").write_text(text)
    Path(host_settings.stack.proxy_caddyfile).parent.mkdir(parents=True)
    return Path(host_settings.stack.proxy_caddyfile)


def test_a_domain_with_an_email_gets_acme(host_settings, variants: Path) -> None:
    firstboot.write_caddyfile(host_settings, {"domain": "emr.example.org", "acme.email": "it@example.org"})
    text = variants.read_text()
    assert "emr.example.org {" in text and "issuer acme" in text and "email it@example.org" in text


def test_a_domain_without_an_email_gets_the_internal_ca(host_settings, variants: Path) -> None:
    firstboot.write_caddyfile(host_settings, {"domain": "emr.example.org"})
    text = variants.read_text()
    assert "default_sni emr.example.org" in text and "tls internal" in text and "@@" not in text


def test_no_domain_keeps_the_baked_caddyfile(host_settings, variants: Path) -> None:
    firstboot.write_caddyfile(host_settings, {})
    assert not variants.exists()


def test_a_target_given_without_backup_settings_fails(host_settings) -> None:
    host_settings.path("backup").unlink()
    with pytest.raises(Failed, match=r"a backup\.target was given but .*backup\.json .* is missing"):
        firstboot.set_up_backups(host_settings, {"backup.target": "/srv/backups"})


def test_a_target_given_at_first_boot_replaces_the_baked_one(host_settings, monkeypatch) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(firstboot.proc, "run", lambda argv, **kw: ran.append(list(argv)))
    monkeypatch.setattr(firstboot.netinfo, "hostname", lambda: "instance-7")
    opened: list[str] = []
    monkeypatch.setattr(
        firstboot.backup,
        "init_repository",
        lambda settings: opened.append(settings.backup.repository) or {"message": "created the backup repository"},
    )
    chosen = {"backup.target": "s3:https://s3.example.org/clinic-b", "backup.s3_access_key_id": "AKIAB",
              "backup.s3_secret_access_key": "instance-secret"}  # fmt: skip
    notice = firstboot.set_up_backups(host_settings, chosen)
    data = json.loads(host_settings.path("backup").read_text())
    assert data["repository"] == chosen["backup.target"] and data["s3_access_key_id"] == "AKIAB"
    assert data["host"] == "instance-7", "each instance is a host of its own in a shared repository"
    assert opened == [chosen["backup.target"]] and "created the backup repository" in notice
    assert host_settings.layout.secret("backup_s3_secret").read_text() == "instance-secret\n"
    assert host_settings.layout.secret("backup_passphrase").exists()
    assert notice and "Backups go to s3:https://s3.example.org/clinic-b" in notice
    assert str(host_settings.layout.secret("backup_passphrase")) in notice
    units = host_settings.layout.units
    timers = [f"{units[key]}.timer" for key in ("backup", "backup_check", "drill")]
    assert ran == [["systemctl", "enable", "--now", *timers]]


def test_a_finished_first_boot_does_nothing(host_settings, monkeypatch) -> None:
    done = Path(host_settings.layout.firstboot_done)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text("2026-11-01T00:00:00Z\n")
    monkeypatch.setattr(firstboot, "first_boot", lambda settings: pytest.fail("ran again"))
    assert firstboot.run(host_settings) == 0


def test_refused_settings_say_so_in_the_motd_and_start_nothing(host_settings, monkeypatch) -> None:
    seed_file = Path(host_settings.layout.firstboot_seed)
    seed_file.parent.mkdir(parents=True, exist_ok=True)
    seed_file.write_text("domain: not a domain\n")
    assert firstboot.run(host_settings) == 2
    motd = Path(host_settings.layout.motd_file).read_text()
    assert "first boot refused" in motd and "'domain' = 'not a domain'" in motd and "Nothing was started" in motd
    assert not Path(host_settings.layout.firstboot_done).exists()
    assert not host_settings.layout.secret("db_root").exists()
