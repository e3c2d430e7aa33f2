"""State shared by the state machine examples of one run: the server and clients, the
fault and check tallies, the models of finished examples still to verify, the first
failure, and the SIGKILL + restart fault (it concerns every model and the load)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from hopper.server_process import ServerProcess
from hopper.soak.api import ApiError, HttpApi, WsSession
from hopper.soak.checks import MemoryWatch, StatsWatch, Tally
from hopper.soak.cluster import SoakCluster
from hopper.soak.config import SoakConfig
from hopper.soak.errors import Unavailable, Violation
from hopper.soak.load import Load
from hopper.soak.model import Model


class Retired:
    """A finished example's model and queues, verified and obliterated once its given-up
    leases are due."""

    def __init__(self, model: Model, queues: tuple[str, ...]) -> None:
        self.model = model
        self.queues = queues


class SoakContext:
    def __init__(
        self,
        config: SoakConfig,
        api: HttpApi,
        server: ServerProcess | SoakCluster | None,
        load: Load,
        tally: Tally,
        run_id: str,
        deadline: float,
    ) -> None:
        self.config = config
        self.api = api
        self.server = server
        self.load = load
        self.tally = tally
        self.run_id = run_id
        self.deadline = deadline
        self.faults: Counter[str] = Counter({k: 0 for k in config.fault_kinds})
        self.allowed: Counter[str] = Counter()
        self.stats = StatsWatch()
        self.memory = MemoryWatch(config.max_rss_mb)
        self.examples = 0
        self.steps = 0
        self.machine_jobs = 0
        self.current: Retired | None = None
        self.retired: list[Retired] = []
        self.last_crash = 0.0
        self.last_periodic = 0.0
        self.overtime = False  # the final directed pass runs past the deadline
        self.failure: BaseException | None = None
        self.trail: deque[str] = deque(maxlen=25)
        self._lock = threading.Lock()

    # ----- run state ---------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Records the run's first failure: a server that stops answering or answers
        what it should not is a violation too; anything else is the suite's own error."""
        if isinstance(exc, Unavailable):
            exc = Violation("available", f"the server did not answer: {exc}")
        elif isinstance(exc, ApiError):
            exc = Violation("protocol", str(exc))
        with self._lock:
            if self.failure is None:
                self.failure = exc

    def checked(self, fn: Callable[[], None]) -> None:
        """Runs `fn` unless the run already failed; records what it raises."""
        if self.failure is not None:
            return
        try:
            fn()
        except Exception as e:
            self.fail(e)

    @property
    def stopped(self) -> bool:
        if self.failure is not None:
            return True
        return not self.overtime and time.monotonic() >= self.deadline

    def note(self, name: str, args: dict[str, Any]) -> None:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if k != "data")
        self.trail.append(f"example {self.examples}: {name}({shown})")

    def new_model(self) -> Model:
        c = self.config
        return Model(
            always=c.fsync == "always",
            stall_s=c.stall_interval_ms / 1000,
            slack_s=2.0 + c.stall_interval_ms / 10_000,
            allowed=self.allowed,
        )

    def ws(self) -> WsSession:
        return WsSession(self.api.url, self.config.token)

    def models(self) -> list[Retired]:
        return ([self.current] if self.current else []) + list(self.retired)

    # ----- SIGKILL and restart -----------------------------------------------------------

    def can_kill(self) -> bool:
        return (
            self.server is not None
            and "server-kill" in self.faults
            and time.monotonic() - self.last_crash >= self.config.crash_gap_s
        )

    def kill_and_restart(self) -> None:
        """SIGKILL the server's process group mid-load, restart it on the same data dir
        and port, then check every promise on what it recovered."""
        assert self.server is not None
        now = time.monotonic()
        for r in self.models():
            r.model.before_kill(now)
        self.load.down.set()
        self.server.kill()
        # After the kill: a request the load sent before this cannot reach the new server.
        self.load.ledger.crashed()
        self.faults["server-kill"] += 1
        try:
            # The killed server's port and directory lock may linger a moment.
            self.server.start(retry=True)
        finally:
            self.load.down.clear()
        ready = time.monotonic()
        self.last_crash = ready
        for r in self.models():
            for j in list(r.model.jobs.values()):
                r.model.recover(j, self.api.get(j.id), ready)
                self.tally.add("no-lost-push")
        self.load.verify_all(self.api)
        self.stats.reset(self.api)

    # ----- periodic checks ---------------------------------------------------------------

    def periodic(self, force: bool = False) -> None:
        """Server-wide checks, at most every 0.5 s: totals, memory, one retired example."""
        now = time.monotonic()
        if not force and now - self.last_periodic < 0.5:
            return
        self.last_periodic = now
        self.stats.check(self.api, self.tally)
        self.memory.check(self.api, self.tally)
        self.sweep(limit=1)

    def sweep(self, limit: int | None = None, wait: bool = False) -> None:
        """Verifies finished examples whose given-up leases are due and obliterates their
        queues. `wait`: sleep (bounded) until they are due."""
        done = 0
        for r in list(self.retired):
            if limit is not None and done >= limit:
                return
            due = max((j.return_by or 0.0 for j in r.model.jobs.values()), default=0.0)
            left = due - time.monotonic()
            if left > 0:
                if not wait:
                    continue
                time.sleep(min(left, 120.0))
            for j in list(r.model.jobs.values()):
                sent = time.monotonic()
                got = self.api.get(j.id)
                r.model.check_observed(j, got, sent)
                self.tally.add("no-lost-push")
                if j.return_by is not None:
                    self.tally.add("stalled-jobs-return")
                if j.acked:
                    self.tally.add("no-double-completion")
            for q in r.queues:
                self.api.obliterate(q)
            self.retired.remove(r)
            done += 1

    def require(self, ok: bool, invariant: str, message: str) -> None:
        self.tally.add(invariant)
        if not ok:
            raise Violation(invariant, message)
