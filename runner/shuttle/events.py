"""Ansible's raw events reduced to what a user needs: which task ran where, and how it ended.

ansible-runner hands over every callback event with the module's full result. Only a few chosen
fields leave this module (task and role names, host, status, a failure message), so no module
argument or result value can leak into the terminal, the NDJSON stream or the run log. Failure
messages of `no_log` tasks arrive already censored by Ansible.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

#: The role whose failures mean "this host is not one Shuttle supports": bad input, not a broken host.
PREFLIGHT_ROLE = "preflight"

_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}
_AUTH_FAILURES = ("Permission denied", "Authentication failed", "Too many authentication failures")
#: Mitogen reports OpenSSH's "Permission denied" in its own words; the user is told OpenSSH's.
_MITOGEN_AUTH_FAILURES = (
    "SSH password was requested, but none specified",
    "SSH authentication is incorrect",
    "SSH password is incorrect",
)
KEY_REFUSED_MESSAGE = "Permission denied: the host accepted none of the SSH keys offered"
#: Mitogen starts Python on the host to connect at all, so a host without it is unreachable, not
#: refused by preflight's own check; it is the same refusal, told in the same words.
_NO_PYTHON = re.compile(r"python3: (command not found|No such file or directory)")
NO_PYTHON_MESSAGE = "Python 3 is not installed on the host; install python3 (apt-get install python3) and run again"


@dataclass
class Event:
    """One line of progress: a task starting, or its result on one host."""

    event: str
    host: str | None = None
    task: str | None = None
    role: str | None = None
    status: str | None = None
    message: str | None = None
    time: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def _message(result: dict[str, Any]) -> str | None:
    if result.get("censored"):
        return str(result["censored"])
    stderr = str(result.get("stderr") or "").strip()
    if result.get("msg") == "non-zero return code" and stderr:
        # A command's own words say more than Ansible's summary of them.
        return "\n".join(stderr.splitlines()[-5:])
    for key in ("msg", "reason"):
        if result.get(key):
            return str(result[key]).strip()
    for key in ("stderr", "module_stderr", "stdout"):
        text = str(result.get(key) or "").strip()
        if text:
            return "\n".join(text.splitlines()[-5:])
    return None


def _task_label(data: dict[str, Any]) -> str:
    task = str(data.get("task") or "")
    role = data.get("role")
    return f"{role} : {task}" if role and not task.startswith(f"{role} :") else task


def translate(raw: dict[str, Any]) -> Event | None:
    """Map one ansible-runner event to an Event, or None for events users need not see."""
    kind = raw.get("event", "")
    data = raw.get("event_data", {})
    if kind == "playbook_on_task_start":
        return Event("task_start", task=_task_label(data), role=data.get("role"))
    if kind in _RESULT_EVENTS:
        result = data.get("res") or {}
        status = _RESULT_EVENTS[kind]
        if status == "ok" and result.get("changed"):
            status = "changed"
        if status == "failed" and data.get("ignore_errors"):
            status = "ok"
        message = _message(result) if status in ("failed", "unreachable") else None
        if status == "unreachable" and message and any(text in message for text in _AUTH_FAILURES):
            status = "auth_failed"
        elif status == "unreachable" and message and any(text in message for text in _MITOGEN_AUTH_FAILURES):
            status, message = "auth_failed", KEY_REFUSED_MESSAGE
        elif status == "unreachable" and message and _NO_PYTHON.search(message):
            status, message = "rejected", NO_PYTHON_MESSAGE
        elif status == "failed" and data.get("role") == PREFLIGHT_ROLE:
            status = "rejected"
        event = Event("task_result", host=data.get("host"), task=_task_label(data), role=data.get("role"))
        event.status, event.message = status, message
        return event
    if kind == "warning":
        text = str(raw.get("stdout", "")).replace("[WARNING]:", "").strip()
        return Event("warning", message=text) if text else None
    return None
