"""The live progress line: once a second on stderr, the rate over the last second and the
p50/p99 measured so far (rewritten in place on a terminal, one line per second otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TextIO

from hopper.bench import histograms
from hopper.bench.scenarios import RunState
from hopper.bench.schedule import now_ns


class Progress:
    def __init__(self, label: str, st: RunState, out: TextIO, interval_s: float = 1.0) -> None:
        self.label = label
        self.st = st
        self.out = out
        self.interval_s = interval_s
        self.tty = out.isatty()
        self.started = now_ns()
        self._last: dict[str, int] = {}
        self._last_prefill = 0
        self._last_ns = self.started
        self._task: asyncio.Task[None] | None = None
        self._wrote = False

    def line(self, final: bool = False) -> str:
        """The status now; rates are over the time since the previous line."""
        st = self.st
        t = now_ns()
        dt = max(1e-9, (t - self._last_ns) / 1e9)
        self._last_ns = t
        head = f"[{self.label}] {(t - self.started) / 1e9:5.1f}s"
        if st.phase == "prefill":
            rate = (st.prefilled - self._last_prefill) / dt
            self._last_prefill = st.prefilled
            return f"{head} prefill {st.prefilled:,} jobs ({rate:,.0f}/s)"
        phase = "done" if final else st.phase
        if phase == "run" and st.in_warmup():
            phase = "warmup"
        parts = [f"{head} {phase}"]
        for rec in st.recorders:
            finished = rec.finished()
            # the final line gives the run's measured rate, not the last fraction of a second
            rate = rec.rate() if final else (finished - self._last.get(rec.name, 0)) / dt
            self._last[rec.name] = finished
            p50 = histograms.value_ms(rec.hist, 50)
            p99 = histograms.value_ms(rec.hist, 99)
            parts.append(
                f"{rec.name} {rate:,.0f}/s n={rec.ok:,} p50 {p50:.2f} p99 {p99:.2f} ms"
                f" err {rec.errors}"
            )
        return " | ".join(parts)

    async def _run(self) -> None:
        tick = 0
        while True:
            tick += 1
            due = self.started + int(tick * self.interval_s * 1e9)
            await asyncio.sleep(max(0.0, (due - now_ns()) / 1e9))
            self._emit(self.line())

    def _emit(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()
        self._wrote = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stops the ticks and writes a last line with the final state."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._emit(self.line(final=True))
        if self.tty and self._wrote:
            self.out.write("\n")
            self.out.flush()
