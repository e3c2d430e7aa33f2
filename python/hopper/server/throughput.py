"""Push/pull rates for `/stats`: totals sampled once a second into a short ring, so a
rate is a difference over the last ten seconds instead of a per-request counter."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from hopper.engine import Engine

WINDOW = 10  # samples, one per second


class Throughput:
    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=WINDOW + 1)

    def sample(self, engine: Engine) -> None:
        stats = engine.stats()
        self._samples.append((time.monotonic(), stats["pushed"], stats["pulled"]))

    async def run(self, engine: Engine) -> None:
        while True:
            self.sample(engine)
            await asyncio.sleep(1)

    def rates(self) -> tuple[float, float]:
        """(pushes/s, pulls/s) over the sampled window; zeros until two samples exist."""
        if len(self._samples) < 2:
            return 0.0, 0.0
        (t0, push0, pull0), (t1, push1, pull1) = self._samples[0], self._samples[-1]
        span = max(t1 - t0, 1e-9)
        return round((push1 - push0) / span, 1), round((pull1 - pull0) / span, 1)
