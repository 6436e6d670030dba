"""Raw Ansible events become events that carry names and statuses, never module data."""

from __future__ import annotations

from shuttle.events import translate


def raw(kind: str, **data: object) -> dict:
    return {"event": kind, "event_data": {"host": "clinic-a", "task": "Write the env file", "role": "stack", **data}}


def test_a_task_start_names_the_role_and_task() -> None:
    event = translate({"event": "playbook_on_task_start", "event_data": {"task": "Install restic", "role": "backup"}})
    assert event is not None and (event.event, event.task, event.host) == (
        "task_start",
        "backup : Install restic",
        None,
    )


def test_a_changed_result_carries_no_module_data() -> None:
    event = translate(raw("runner_on_ok", res={"changed": True, "stdout": "DB_PASSWORD=s3cret", "diff": "x"}))
    assert event is not None and event.status == "changed" and event.message is None
    assert "s3cret" not in repr(event.as_dict())


def test_a_censored_failure_stays_censored() -> None:
    censored = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
    event = translate(raw("runner_on_failed", res={"censored": censored, "stderr": "s3cret"}))
    assert event is not None and event.status == "failed" and event.message == censored


def test_a_failed_command_shows_its_own_last_lines() -> None:
    stderr = "\n".join(f"line {n}" for n in range(10))
    event = translate(raw("runner_on_failed", res={"msg": "non-zero return code", "stderr": stderr}))
    assert event is not None and event.message == "\n".join(f"line {n}" for n in range(5, 10))


def test_a_preflight_failure_is_a_refusal_and_an_ignored_error_is_ok() -> None:
    refused = translate(raw("runner_on_failed", role="preflight", res={"msg": "unsupported OS Debian 11"}))
    assert refused is not None and refused.status == "rejected"
    ignored = translate(raw("runner_on_failed", ignore_errors=True, res={"msg": "x"}))
    assert ignored is not None and ignored.status == "ok"


def test_a_rejected_key_is_an_authentication_failure() -> None:
    event = translate(raw("runner_on_unreachable", res={"msg": "root@10.0.0.5: Permission denied (publickey)."}))
    assert event is not None and event.status == "auth_failed"
    mitogen_says = "SSH password was requested, but none specified"
    in_mitogen_words = translate(raw("runner_on_unreachable", res={"msg": mitogen_says}))
    assert in_mitogen_words is not None and in_mitogen_words.status == "auth_failed"
    assert in_mitogen_words.message is not None and in_mitogen_words.message.startswith("Permission denied")
    gone = translate(raw("runner_on_unreachable", res={"msg": "connect to host 10.0.0.5 port 22: Connection refused"}))
    assert gone is not None and gone.status == "unreachable"


def test_a_host_without_python_is_refused_with_what_to_install() -> None:
    stream = "EOF on stream; last 100 lines received:\nbash: line 1: python3: command not found"
    event = translate(raw("runner_on_unreachable", role="preflight", res={"msg": stream}))
    assert event is not None and event.status == "rejected"
    assert event.message is not None and "apt-get install python3" in event.message
    stream = "EOF on stream; last 100 lines received:\nbash: line 1: /usr/bin/python3: No such file or directory"
    assert translate(raw("runner_on_unreachable", res={"msg": stream})).status == "rejected"  # type: ignore[union-attr]


def test_warnings_pass_and_other_events_do_not() -> None:
    warning = translate({"event": "warning", "stdout": "[WARNING]: ACME order failed"})
    assert warning is not None and warning.message == "ACME order failed"
    assert translate({"event": "verbose", "stdout": "x"}) is None
    assert translate(raw("runner_item_on_ok", res={"item": "secret"})) is None
