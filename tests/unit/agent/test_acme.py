"""The ACME check: how long it looks, and the reason it gives from Caddy's log."""

from __future__ import annotations

import json

from shuttle_host import acme
from tests.unit.agent.fake_clock import FakeClock


def test_the_reason_is_the_last_error_logged_for_the_domain() -> None:
    lines = [
        "proxy-1  | " + json.dumps({"msg": acme.ORDER_FAILED, "identifier": "other.example.org", "error": "x"}),
        "proxy-1  | " + json.dumps({"msg": acme.ORDER_FAILED, "identifier": "emr.example.org", "error": "first"}),
        "proxy-1  | not json " + acme.ORDER_FAILED + " {",
        "proxy-1  | " + json.dumps({"msg": acme.ORDER_FAILED, "identifier": "emr.example.org",
                                    "error": "dial tcp 10.0.0.1:14000:\n connect: connection refused"}),
    ]  # fmt: skip
    assert acme.order_error(lines, "emr.example.org") == "dial tcp 10.0.0.1:14000: connect: connection refused"
    assert acme.order_error(lines, "none.example.org") == ""


class Logs:
    def __init__(self, host_settings) -> None:
        self.asked = 0

    def logs(self, service: str, tail: int) -> list[str]:
        self.asked += 1
        return []


def check(host_settings, looks: list[str], monkeypatch) -> tuple[dict, float]:
    from shuttle_host import docker  # noqa: PLC0415

    monkeypatch.setattr(docker.Docker, "logs", lambda self, service, tail: [])
    seen = iter(looks)
    clock = FakeClock()
    result = acme.check(host_settings, look=lambda: next(seen), clock=clock, sleep=clock.sleep)
    return result, clock.now


def test_an_issued_certificate_ends_the_look_at_once(host_settings, monkeypatch) -> None:
    assert check(host_settings, ["acme"], monkeypatch) == ({"state": "acme", "reason": ""}, 0)


def test_the_internal_fallback_ends_the_look_without_waiting_it_out(host_settings, monkeypatch) -> None:
    result, waited = check(host_settings, ["none", "none", "internal"], monkeypatch)
    assert result["state"] == "internal" and waited == 4 < host_settings.stack.acme_wait


def test_no_certificate_at_all_is_reported_after_the_wait(host_settings, monkeypatch) -> None:
    result, waited = check(host_settings, ["none"] * 100, monkeypatch)
    assert result["state"] == "none" and waited >= host_settings.stack.acme_wait
