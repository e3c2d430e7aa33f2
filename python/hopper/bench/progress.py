"""The live progress line: once a second on stderr, the rate over the last second and the
p50/p99 measured so far, from the load generator's snapshots (rewritten in place on a
terminal, one line per second otherwise). A value not measured yet shows as `-`."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol, TextIO

from hopper.bench.histograms import Series, value_ms


class Watched(Protocol):
    def snapshot(self) -> str: ...


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


class Progress:
    def __init__(self, label: str, gen: Watched, out: TextIO, interval_s: float = 1.0) -> None:
        self.label = label
        self.gen = gen
        self.out = out
        self.interval_s = interval_s
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._due = self.started + interval_s
        self._last: dict[str, int] = {}
        self._last_prefill = 0
        self._last_t = self.started
        self._wrote = False

    def line(self, snap: dict[str, Any]) -> str:
        """The status of a snapshot; rates are over the time since the previous line."""
        t = time.monotonic()
        dt = max(1e-9, t - self._last_t)
        self._last_t = t
        head = f"[{self.label}] {t - self.started:5.1f}s"
        if snap["phase"] == "prefill":
            rate = (snap["prefilled"] - self._last_prefill) / dt
            self._last_prefill = snap["prefilled"]
            return f"{head} prefill {snap['prefilled']:,} jobs ({rate:,.0f}/s)"
        parts = [f"{head} {snap['phase']}"]
        for s in snap["series"]:
            rate = (s["finished"] - self._last.get(s["name"], 0)) / dt
            self._last[s["name"]] = s["finished"]
            parts.append(
                f"{s['name']} {rate:,.0f}/s n={s['ok']:,} p50 {_ms(s['p50_ms'])} "
                f"p99 {_ms(s['p99_ms'])} ms err {s['errors']}"
            )
        return " | ".join(parts)

    def final_line(self, report: dict[str, Any]) -> str:
        """The run's measured rates and latencies."""
        parts = [f"[{self.label}] {time.monotonic() - self.started:5.1f}s done"]
        for d in report["series"]:
            s = Series.from_report(d)
            p50 = value_ms(s.hist, 50) if s.ok else None
            p99 = value_ms(s.hist, 99) if s.ok else None
            parts.append(
                f"{s.name} {s.rate():,.0f}/s n={s.ok:,} p50 {_ms(p50)} p99 {_ms(p99)} ms "
                f"err {s.errors}"
            )
        return " | ".join(parts)

    def tick(self) -> None:
        """Writes a line when one is due."""
        if time.monotonic() < self._due:
            return
        self._due += self.interval_s
        self._emit(self.line(json.loads(self.gen.snapshot())))

    def _emit(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()
        self._wrote = True

    def stop(self, report: dict[str, Any]) -> None:
        """A last line with the final state."""
        self._emit(self.final_line(report))
        if self.tty and self._wrote:
            self.out.write("\n")
            self.out.flush()
