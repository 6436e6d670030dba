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
