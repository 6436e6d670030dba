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

import base64
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

from shuttle_host import proc
from shuttle_host.docker import Docker
from shuttle_host.errors import Failed

OE_ROOT = "/var/www/localhost/htdocs/openemr"
_MARK = "SHUTTLE-SITEKEYS "
_SCRIPT = """<?php
$_GET['site'] = 'default';
$_SERVER['HTTP_HOST'] = $_SERVER['SERVER_NAME'] = 'localhost';
$_SERVER['REQUEST_URI'] = $_SERVER['PHP_SELF'] = '/';
$ignoreAuth = true;
require_once '@ROOT@/interface/globals.php';
$request = json_decode(base64_decode('@REQUEST@'), true);
$crypto = new OpenEMR\\Common\\Crypto\\CryptoGen();
$value = $request['action'] === 'encrypt'
    ? $crypto->encryptStandard($request['value']) : $crypto->decryptStandard($request['value']);
echo "\\n@MARK@" . json_encode(['value' => $value === false ? null : $value]) . "\\n";
"""


def _ask(docker: Docker, sites: Path, action: str, value: str) -> str | None:
    """Run the request in the app container as the owner of sites/ (a key it creates must stay the app's)."""
    owner = (sites / "default" / "sqlconf.php").stat()
    request = base64.b64encode(json.dumps({"action": action, "value": value}).encode()).decode()
    script = _SCRIPT.replace("@ROOT@", OE_ROOT).replace("@REQUEST@", request).replace("@MARK@", _MARK)
    argv = ["docker", "exec", "-i", "-u", f"{owner.st_uid}:{owner.st_gid}", docker.running("app"), "php"]
    done = proc.run(argv, what=f"ask OpenEMR to {action} with its site keys", input=script, check=False, timeout=120)
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            answer = json.loads(line[len(_MARK) :])["value"]
            return None if answer is None else str(answer)
    why = proc.last_lines(done.stdout + "\n" + done.stderr) or f"exit code {done.returncode}"
    raise Failed(f"OpenEMR could not {action} with its site keys: {why}")


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
