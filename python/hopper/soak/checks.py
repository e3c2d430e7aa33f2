"""Invariant checks that read the server (counts, totals, memory) and the tally of how
many times each invariant was checked."""

from __future__ import annotations

import threading
import time
from collections import Counter

from hopper.job import STATES
from hopper.soak.api import HttpApi
from hopper.soak.errors import Violation
from hopper.soak.model import Model

INVARIANTS = (
    "no-lost-push",
    "no-double-completion",
    "ids-unique",
    "counts-consistent",
    "state-consistent",
    "stalled-jobs-return",
    "dropped-connection-releases",
    "stats-monotonic",
    "memory-bounded",
)
TOTALS = ("totalPushed", "totalPulled", "totalCompleted", "totalFailed")


class Tally:
    """Checks made per invariant (thread-safe: the load threads count too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, invariant: str, n: int = 1) -> None:
        with self._lock:
            self.counts[invariant] += n

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {k: self.counts[k] for k in INVARIANTS if self.counts[k]}


def check_counts(api: HttpApi, model: Model, queue: str, tally: Tally) -> None:
    """The management counts of a machine queue: the total equals the model's jobs and
    each state lies between the jobs surely in it and the jobs possibly in it."""
    counts = api.counts(queue)
    # A lease that may have stalled while the request was in flight is no longer sure.
    model.expire_leases(time.monotonic())
    bounds = model.count_bounds(queue)
    total = len(model.in_queue(queue))
    tally.add("counts-consistent")
    if sum(counts.values()) != total:
        raise Violation(
            "counts-consistent",
            f"queue {queue} counts {counts} sum to {sum(counts.values())}, the suite has "
            f"{total} jobs there",
        )
    for state in STATES:
        lo, hi = bounds[state]
        if not lo <= counts[state] <= hi:
            raise Violation(
                "counts-consistent",
                f"queue {queue} has {counts[state]} {state} jobs, the model allows {lo}..{hi} "
                f"(counts {counts})",
            )


class StatsWatch:
    """`/stats` lifetime totals never go down while one server process lives, and
    `totalPushed` / `totalCompleted` grow at least by the machine's own new pushes / acks
    since the baseline (other clients only add to them)."""

    def __init__(self) -> None:
        self.last: dict[str, int] | None = None
        self.base: dict[str, int] | None = None
        self.pushed = 0
        self.completed = 0

    def reset(self, api: HttpApi) -> None:
        """A new server process (totals restart from the last synced batch)."""
        self.last = self.base = self._totals(api)
        self.pushed = self.completed = 0

    @staticmethod
    def _totals(api: HttpApi) -> dict[str, int]:
        stats = api.stats()["stats"]
        return {k: int(stats[k]) for k in TOTALS}

    def check(self, api: HttpApi, tally: Tally) -> None:
        now = self._totals(api)
        tally.add("stats-monotonic")
        if self.last is None or self.base is None:
            self.last = self.base = now
            return
        for k in TOTALS:
            if now[k] < self.last[k]:
                raise Violation(
                    "stats-monotonic", f"/stats {k} went down from {self.last[k]} to {now[k]}"
                )
        for k, mine in (("totalPushed", self.pushed), ("totalCompleted", self.completed)):
            if now[k] - self.base[k] < mine:
                raise Violation(
                    "stats-monotonic",
                    f"/stats {k} grew by {now[k] - self.base[k]} since the baseline, but the "
                    f"suite alone got {mine} answered",
                )
        self.last = now


class MemoryWatch:
    def __init__(self, bound_mb: int) -> None:
        self.bound_mb = bound_mb
        self.peak_mb = 0

    def check(self, api: HttpApi, tally: Tally) -> None:
        rss = int(api.health()["memory"]["rss"])
        self.peak_mb = max(self.peak_mb, rss)
        tally.add("memory-bounded")
        if rss > self.bound_mb:
            raise Violation(
                "memory-bounded", f"server RSS {rss} MB is above the bound of {self.bound_mb} MB"
            )
