"""The host tier's heavy setups, run in the background two at a time while the tests run.

A setup (a converged root host, a copy of one launched with its own settings, a fleet, a drill) is a *job*: a
function of the session registered under the name of the fixture that hands out its result. After collection
the session starts every job the collected tests need (and the jobs those need), each in a thread of its own
that waits for what it needs without holding a slot; at most `SLOTS` run at once, and a free slot goes to the
ready job the earliest test needs, so the tests wait as little as they can. A fixture
asks for its job's result and waits only if it is not done yet. So a drill's three converges run while the
launch tests read the launched host, and a run of one module builds only what that module needs.

Hosts are shared the way the tests use them: a job's result is read by its own module's tests (the fleet by
test_fleet's and test_tls's), the launched root by the tests that only read it. A job's hosts are removed once
no test still to run needs it or a job made from it; every host and snapshot when the session ends, also when
it ends early (a job still converging then fails fast: its host is gone).
"""

from __future__ import annotations

import heapq
import threading
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import execlog, hosts, progress

#: Setups running at once besides the tests themselves: the machines have 2 cores.
SLOTS = 2


@dataclass
class Job:
    name: str
    build: Callable[[Session], Any]
    needs: tuple[str, ...] = ()
    #: Rough minutes of work: the bigger jobs start first.
    weight: float = 1.0


REGISTRY: dict[str, Job] = {}


def job(name: str, *, needs: Iterable[str] = (), weight: float = 1.0) -> Callable[[Callable], Callable]:
    """Register a setup under the name of the fixture that hands out its result."""

    def register(build: Callable[[Session], Any]) -> Callable[[Session], Any]:
        REGISTRY[name] = Job(name, build, tuple(needs), weight)
        return build

    return register


@dataclass
class Session:
    """What every job may use: a temporary directory, hosts it starts, the exec recorder."""

    tmp: Callable[[str], Path]
    recorder: execlog.Recorder | None = None
    hosts: list[hosts.TestHost] = field(default_factory=list)
    snapshots: list[hosts.Snapshot] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _futures: dict[str, Future] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)
    #: Jobs whose needs are met, waiting for a slot: (rank, name). Lower rank: needed by an earlier test.
    _ready: list[tuple[float, str]] = field(default_factory=list)
    _running: int = 0
    _turn: threading.Condition = field(default_factory=threading.Condition)
    _rank: dict[str, float] = field(default_factory=dict)
    _owned: dict[str, list[hosts.TestHost]] = field(default_factory=dict)

    def start_host(self, distro: str = "debian13", **kwargs: Any) -> hosts.TestHost:
        if self.cancelled.is_set():
            raise RuntimeError("the session is ending")
        return self.own(hosts.start(distro, **kwargs))

    def own(self, host: hosts.TestHost) -> hosts.TestHost:
        """Remove `host` when the session ends, or sooner when the job that started it is released."""
        job = threading.current_thread().name.removeprefix("job-")
        with self._lock:
            self.hosts.append(host)
            self._owned.setdefault(job, []).append(host)
        return host

    def release(self, name: str) -> None:
        """The tests that use job `name` are done: remove the hosts it started (idle hosts still cost CPU)."""
        with self._lock:
            done = self._owned.pop(name, [])
            self.hosts = [host for host in self.hosts if host not in done]
        for host in done:
            host.destroy()

    def release_unneeded(self, needed: set[str]) -> None:
        """Release every finished job that neither `needed` nor a job they need (a copy may be made of its
        snapshot, a later test may read its S3 server) is: called when a module's tests are done."""
        keep: set[str] = set()
        pending = list(needed)
        while pending:
            name = pending.pop()
            if name not in keep and name in REGISTRY:
                keep.add(name)
                pending.extend(REGISTRY[name].needs)
        with self._lock:
            done = [name for name in self._owned if name in self._futures and self._futures[name].done()]
        for name in done:
            if name not in keep:
                self.release(name)

    def snapshot(self, host: hosts.TestHost, name: str) -> hosts.Snapshot:
        with progress.step(f"saving {host.name} as the snapshot {name}"):
            saved = hosts.snapshot(host, name)
        with self._lock:
            self.snapshots.append(saved)
        return saved

    def want(self, name: str) -> Future:
        """The job's future, starting it (and what it needs) if nobody has yet."""
        with self._lock:
            if name in self._futures:
                return self._futures[name]
            future: Future = Future()
            self._futures[name] = future
        entry = REGISTRY[name]
        needed = [self.want(need) for need in entry.needs]
        thread = threading.Thread(target=self._run, args=(entry, needed, future), name=f"job-{name}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return future

    def _slot(self, name: str) -> None:
        """Wait for a slot, which goes to the ready job with the lowest rank."""
        key = (self._rank.get(name, float("inf")), name)
        with self._turn:
            heapq.heappush(self._ready, key)
            self._turn.wait_for(lambda: self._running < SLOTS and self._ready[0] == key)
            heapq.heappop(self._ready)
            self._running += 1
            self._turn.notify_all()

    def _release(self) -> None:
        with self._turn:
            self._running -= 1
            self._turn.notify_all()

    def _run(self, entry: Job, needed: list[Future], future: Future) -> None:
        try:
            for dependency in needed:
                dependency.result()
            self._slot(entry.name)
            try:
                if self.cancelled.is_set():
                    raise RuntimeError("the session is ending")
                with progress.step(f"preparing {entry.name}"):
                    future.set_result(entry.build(self))
            finally:
                self._release()
        except BaseException as problem:  # the fixture that asks re-raises it, where pytest reports it
            if not self.cancelled.is_set():
                progress.say(f"preparing {entry.name} failed: {''.join(traceback.format_exception_only(problem))}")
            future.set_exception(problem)

    def first_ready(self, needs: dict[str, set[str]], candidates: list[str]) -> str:
        """The first of `candidates` whose jobs (`needs[candidate]`) are all done, waiting for one if none is."""
        while True:
            waiting: set[Future] = set()
            for candidate in candidates:
                futures = {self.want(name) for name in needs[candidate]}
                pending = {future for future in futures if not future.done()}
                if not pending:
                    return candidate
                waiting |= pending
            wait(waiting, return_when=FIRST_COMPLETED)

    def get(self, name: str) -> Any:
        return self.want(name).result()

    def prefetch(self, ranks: dict[str, float]) -> None:
        """Start every job in `ranks` (job -> the position of the first test that needs it) and what it needs; a
        job needed by another ranks as early as that one."""
        wanted: dict[str, float] = {}

        def add(name: str, rank: float) -> None:
            if name in REGISTRY and rank < wanted.get(name, float("inf")):
                wanted[name] = rank
                for need in REGISTRY[name].needs:
                    add(need, rank)

        for name, rank in ranks.items():
            add(name, rank)
        self._rank.update(wanted)
        for name in sorted(wanted, key=lambda n: (wanted[n], -REGISTRY[n].weight)):
            self.want(name)

    def close(self) -> None:
        """Stop: remove every host (a job still using one fails at once), wait for the jobs, remove snapshots."""
        self.cancelled.set()
        with self._lock:
            started, self.hosts = list(self.hosts), []
        for host in started:
            host.destroy()
        for thread in list(self._threads):
            thread.join(timeout=600)
        with self._lock:
            late, self.hosts = list(self.hosts), []
        for host in late:
            host.destroy()
        for saved in self.snapshots:
            saved.remove()
        for resource in self.resources.values():
            stop = getattr(resource, "stop", None)
            if callable(stop):
                stop()
