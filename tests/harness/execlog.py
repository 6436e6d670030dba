"""Every program started on this machine, test hosts and their containers included, with its whole argv.

The kernel's audit subsystem records each execve (one rule, `-S execve`) to auditd's log, which this reads
back and decodes (arguments with spaces or quotes are logged as hex). Nothing is sampled: a process that
lives a millisecond is recorded like any other, so a secret that ever reaches a command line is found.
Test hosts share this machine's kernel, so their processes (Ansible's modules, `docker exec`, restic,
MariaDB clients in the stack's containers) are recorded too.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LOG = Path("/var/log/audit/audit.log")
RULE = ["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", "shuttle-test-exec"]
_ARG = re.compile(r'\ba(\d+)(?:\[\d+\])?=("(?:[^"]*)"|[0-9A-Fa-f]+)')


def _running() -> bool:
    status = subprocess.run(["auditctl", "-s"], capture_output=True, text=True, check=True).stdout
    return re.search(r"(?m)^pid [1-9]", status) is not None


def _decode(value: str) -> str:
    if value.startswith('"'):
        return value[1:-1]
    try:
        return bytes.fromhex(value).decode(errors="replace")
    except ValueError:
        return value


def commands(text: str) -> list[str]:
    """The argv of every EXECVE record in an audit log excerpt, arguments joined by spaces."""
    found = []
    for line in text.splitlines():
        if not line.startswith("type=EXECVE "):
            continue
        parts: dict[int, list[str]] = {}
        for number, value in _ARG.findall(line):
            parts.setdefault(int(number), []).append(_decode(value))
        found.append(" ".join("".join(parts[index]) for index in sorted(parts)))
    return found


@dataclass
class Recorder:
    """The audit rule is on while this exists; `since(mark)` reads what was started after `mark()`."""

    def start(self) -> Recorder:
        if shutil.which("auditctl") is None:
            raise RuntimeError("auditd is not installed (scripts/bootstrap installs it)")
        conf = Path("/etc/audit/auditd.conf")
        text = conf.read_text()
        # The whole session's execs must stay in one file: no rotation under the test's feet.
        text = re.sub(r"(?m)^max_log_file\s*=.*$", "max_log_file = 2000", text)
        text = re.sub(r"(?m)^max_log_file_action\s*=.*$", "max_log_file_action = keep_logs", text)
        conf.write_text(text)
        if not _running():
            subprocess.run(["auditd"], check=True)
            deadline = time.monotonic() + 30
            while not _running():
                if time.monotonic() > deadline:
                    raise RuntimeError("auditd did not start")
                time.sleep(0.2)
        subprocess.run(["auditctl", "-b", "16384"], capture_output=True, check=True)
        subprocess.run(["auditctl", "-D", "-k", "shuttle-test-exec"], capture_output=True, check=False)
        subprocess.run(["auditctl", *RULE], capture_output=True, check=True)
        return self

    def stop(self) -> None:
        subprocess.run(["auditctl", "-D", "-k", "shuttle-test-exec"], capture_output=True, check=False)

    def mark(self) -> int:
        return LOG.stat().st_size if LOG.exists() else 0

    def since(self, mark: int) -> list[str]:
        """The commands started since `mark`, once auditd has written everything the kernel sent before now.

        auditd writes records in order: once a command started now is in the log, all earlier ones are.
        """
        flag = f"shuttle-audit-flush-{secrets.token_hex(6)}"
        subprocess.run(["/bin/true", flag], check=True)
        deadline = time.monotonic() + 60
        while True:
            with LOG.open("rb") as log:
                log.seek(mark)
                found = commands(log.read().decode(errors="replace"))
            if any(flag in command for command in found):
                return found
            if time.monotonic() > deadline:
                raise RuntimeError("auditd did not write the flush marker within 60s")
            time.sleep(0.2)
