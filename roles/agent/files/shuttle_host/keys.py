"""The backup's own secrets: the repository passphrase and the key this host logs in to SFTP with.

Both are made on the host, once, and never leave it; losing the passphrase loses the backups, which
is why every message that mentions it says where it is and to keep a copy off the host.
"""

from __future__ import annotations

import socket
from typing import Any

from shuttle_host import files, proc
from shuttle_host.settings import Settings


def ensure(settings: Settings) -> dict[str, Any]:
    """Create the passphrase and, for an sftp: repository, the SSH key pair, where missing.

    Returns the names created and the public key (for the SFTP server's authorized_keys), if any.
    """
    layout, backup = settings.layout, settings.backup
    created = []
    if files.create_secret(layout.secret("backup_passphrase"), files.new_secret(32)):
        created.append(layout.secrets["backup_passphrase"])
    public_key = None
    if backup.repository.startswith("sftp:"):
        key = layout.secret("backup_ssh_key")
        if not key.exists():
            comment = f"{layout.units['backup']}@{socket.gethostname()}"
            proc.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
                what="generate the SFTP key",
            )
            created.append(layout.secrets["backup_ssh_key"])
        public_key = key.with_name(key.name + ".pub").read_text().strip()
    return {"created": created, "public_key": public_key}


def notice(settings: Settings, public_key: str | None) -> str:
    """Where backups go and where the passphrase is, as the launch and the first boot both say it."""
    passphrase = settings.layout.secret("backup_passphrase")
    text = (
        f"Backups go to {settings.backup.repository}; the repository passphrase is in {passphrase} (root only). "
        "Keep a copy off this host: without it the backups cannot be read."
    )
    if public_key:
        text += f" Allow this key on the SFTP server: {public_key}"
    return text
