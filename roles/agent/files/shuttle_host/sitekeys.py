"""Whether data OpenEMR encrypted with its site keys still decrypts: a canary, made at backup time.

OpenEMR encrypts with two key sets that must come from one moment: the database's (`keys` table) and
the drive's (sites/<site>/documents/logs_and_misc/methods/), the second encrypted by the first. A
database and a sites/ from different backups load and serve pages, yet every encrypted value is lost.
So each backup asks the running app to encrypt a random value with its keys (CryptoGen, through the
bootstrap OpenEMR's own command-line scripts use) and records the ciphertext and the value's sha256 in
the manifest; a drill asks the app started on the restored data to decrypt it.

The canary is made before the database dump: should the app create a missing key while encrypting,
that key is then in both parts of the backup.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

from shuttle_host import openemr
from shuttle_host.docker import Docker
from shuttle_host.errors import Failed

_CRYPTO = """$crypto = new OpenEMR\\Common\\Crypto\\CryptoGen();
$value = $request['action'] === 'encrypt'
    ? $crypto->encryptStandard($request['value']) : $crypto->decryptStandard($request['value']);
shuttle_answer(['value' => $value === false ? null : $value]);
"""


def _ask(docker: Docker, sites: Path, action: str, value: str) -> str | None:
    answer = openemr.ask(docker, sites, f"{action} with its site keys", _CRYPTO, {"action": action, "value": value})
    return None if answer.get("value") is None else str(answer["value"])


def canary(docker: Docker, sites: Path) -> dict[str, Any]:
    """A random value encrypted by the running app: its ciphertext and its sha256 (the value is not kept)."""
    value = secrets.token_hex(16)
    ciphertext = _ask(docker, sites, "encrypt", value)
    if ciphertext is None:
        raise Failed("OpenEMR could not encrypt with its site keys")
    return {"ciphertext": ciphertext, "sha256": hashlib.sha256(value.encode()).hexdigest()}


def decrypts(docker: Docker, sites: Path, made: dict[str, Any]) -> bool:
    """Whether the app (on restored data) decrypts the canary to the value it was made from."""
    plain = _ask(docker, sites, "decrypt", str(made["ciphertext"]))
    return plain is not None and hashlib.sha256(plain.encode()).hexdigest() == made["sha256"]
