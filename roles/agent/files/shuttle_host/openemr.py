"""Asking the running OpenEMR to do something with its own code: a PHP script run in the app container.

OpenEMR's command-line scripts bootstrap through interface/globals.php with `$ignoreAuth` set and the
site named; after that the site's globals, its database layer (sqlQuery, sqlStatement) and its classes
(CryptoGen, MyMailer) are there, exactly as the web pages use them. The script goes in on stdin and its
request as base64 inside it, so no value (a password) is ever in an argv; the answer is one marked JSON
line on stdout. It runs as the owner of sites/, so a key or file it creates stays the app's.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from shuttle_host import proc
from shuttle_host.docker import Docker
from shuttle_host.errors import Failed

OE_ROOT = "/var/www/localhost/htdocs/openemr"
_MARK = "SHUTTLE-OPENEMR "
_HEADER = """<?php
$_GET['site'] = 'default';
$_SERVER['HTTP_HOST'] = $_SERVER['SERVER_NAME'] = 'localhost';
$_SERVER['REQUEST_URI'] = $_SERVER['PHP_SELF'] = '/';
$ignoreAuth = true;
require_once '@ROOT@/interface/globals.php';
$request = json_decode(base64_decode('@REQUEST@'), true);
function shuttle_answer(array $answer): void { echo "\\n@MARK@" . json_encode($answer) . "\\n"; }
"""

# Each global is compared first (an encrypted one by decrypting the stored value), and only one that differs
# is written, so a second run changes nothing. Encrypted ones are stored with the site's keys (CryptoGen),
# as OpenEMR's own settings page stores them; the image's OPENEMR_SETTING_* variables cannot do that.
_SET_GLOBALS = """$crypto = new OpenEMR\\Common\\Crypto\\CryptoGen();
$changed = [];
foreach ($request['globals'] as $name => $value) {
    $row = sqlQuery('SELECT gl_value FROM globals WHERE gl_name = ? AND gl_index = 0', [$name]);
    $current = $row === false ? null : $row['gl_value'];
    $secret = in_array($name, $request['encrypted'], true);
    if ($current !== null && ($secret ? $crypto->decryptStandard($current) === $value : $current === $value)) {
        continue;
    }
    sqlStatement('DELETE FROM globals WHERE gl_name = ?', [$name]);
    sqlStatement('INSERT INTO globals (gl_name, gl_index, gl_value) VALUES (?, 0, ?)',
        [$name, $secret ? $crypto->encryptStandard($value) : $value]);
    $changed[] = $name;
}
shuttle_answer(['changed' => $changed]);
"""


def ask(docker: Docker, sites: Path, what: str, body: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run `body` (PHP after the bootstrap, with `$request` decoded; it calls shuttle_answer once) in the app
    container; its answer, or Failed("OpenEMR could not <what>: <its last lines>")."""
    owner = (sites / "default" / "sqlconf.php").stat()
    encoded = base64.b64encode(json.dumps(request).encode()).decode()
    script = _HEADER.replace("@ROOT@", OE_ROOT).replace("@REQUEST@", encoded).replace("@MARK@", _MARK) + body
    argv = ["docker", "exec", "-i", "-u", f"{owner.st_uid}:{owner.st_gid}", docker.running("app"), "php"]
    done = proc.run(argv, what=f"ask OpenEMR to {what}", input=script, check=False, timeout=120)
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            answer = json.loads(line[len(_MARK) :])
            if isinstance(answer, dict):
                return answer
    why = proc.last_lines(done.stdout + "\n" + done.stderr) or f"exit code {done.returncode}"
    raise Failed(f"OpenEMR could not {what}: {why}")


def set_globals(
    docker: Docker, sites: Path, what: str, values: dict[str, str], encrypted: Collection[str] = ()
) -> list[str]:
    """Set OpenEMR's globals to `values` (those named in `encrypted` stored encrypted); the names that changed."""
    answer = ask(docker, sites, what, _SET_GLOBALS, {"globals": values, "encrypted": sorted(encrypted)})
    return [str(name) for name in answer.get("changed") or []]
