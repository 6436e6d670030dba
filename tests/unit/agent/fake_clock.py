"""A clock for the agent's waits (readiness, ACME): time moves only when the code under test sleeps, so a
test of a 900 s deadline takes no time and never depends on the machine's speed."""

from __future__ import annotations


class FakeClock:
    """Stands in for `time.monotonic` (call it) and `time.sleep` (its `sleep`)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
