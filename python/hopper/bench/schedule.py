"""When operations start: closed loop (each lane starts its next operation as soon as the
previous one finished) or open loop (a fixed timetable at `rate` per second shared by all
lanes: slot i is due at start + i / rate, whether or not the server kept up).

In open loop a slot's *intended* time is its place on the timetable. When every lane is
busy the next slot starts late, and its latency still counts from the intended time: that
is the coordinated-omission correction (a user arriving on schedule waits for the backlog
too). In closed loop the intended time is simply the moment the operation starts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

MAX_SLOTS = 100_000_000  # a count bound on top of the time bounds


def now_ns() -> int:
    return time.perf_counter_ns()


@dataclass
class Slot:
    intended_ns: int
    measured: bool  # False during the warm-up


class Pacer:
    """Hands out slots until the count or the duration is used up (or `stop()`)."""

    def __init__(
        self,
        *,
        start_ns: int,
        warmup_s: float,
        duration_s: float | None,
        count: int | None,
        rate: float | None,
        limit_s: float,
    ) -> None:
        if (duration_s is None) == (count is None):
            raise ValueError("exactly one of duration and count")
        self.start_ns = start_ns
        self.measure_start_ns = start_ns + int(warmup_s * 1e9)
        self.end_ns = self.measure_start_ns + int(duration_s * 1e9) if duration_s else None
        self.hard_end_ns = start_ns + int(limit_s * 1e9)
        self.count = count
        self.rate = rate
        self.issued = 0  # all slots handed out
        self.measured_issued = 0
        self.stopped: str | None = None

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    def stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason

    def in_warmup(self) -> bool:
        return now_ns() < self.measure_start_ns

    def _admit(self, t: int) -> Slot | None:
        """The slot at time t, or None when the run is over at t."""
        if self.stopped is not None or self.issued >= MAX_SLOTS:
            return None
        if t >= self.hard_end_ns:
            self.stop("time limit reached")
            return None
        measured = t >= self.measure_start_ns
        if measured:
            if self.count is not None:
                if self.measured_issued >= self.count:
                    return None
            elif self.end_ns is not None and t >= self.end_ns:
                return None
            self.measured_issued += 1
        self.issued += 1
        return Slot(t, measured)

    async def next(self) -> Slot | None:
        if self.rate is None:
            return self._admit(now_ns())
        due = self.start_ns + int(self.issued * 1e9 / self.rate)
        slot = self._admit(due)
        if slot is None:
            return None
        delay = due - now_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
            if self.stopped is not None:
                return None
        return slot
