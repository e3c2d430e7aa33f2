"""What a soak run is told to do: parsed from the command line, or built by a test."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FSYNC_POLICIES = ("always", "interval", "never")
FAULT_KINDS = ("worker-dies", "connection-drop", "server-kill")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `5m`, `1h`, `1h30m` → seconds (> 0)."""
    raw = text.strip().lower()
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)([smh]?))+", raw)
    if not raw or parts is None:
        raise ValueError(f"invalid duration {text!r} (e.g. 60s, 5m, 1h)")
    total = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh]?)", raw))
    if total <= 0:
        raise ValueError("duration must be > 0")
    return total


@dataclass(frozen=True)
class SoakConfig:
    """One run. `url` is a running server; `start` makes the suite start its own."""

    duration_s: float
    url: str | None = None
    start: bool = False
    token: str | None = None
    # Under `always` every answered push and ack is promised to survive a SIGKILL;
    # otherwise only `durable: true` pushes. With --url it is the server's policy (used
    # only to judge a restart the suite did not cause; it causes none).
    fsync: str = "interval"
    stall_interval_ms: int = 1000
    data_dir: Path | None = None
    max_rss_mb: int = 1024
    producers: int = 2
    workers: int = 2
    rate: float = 50.0  # pushes per second per producer
    crash_gap_s: float = 2.0  # least time between two SIGKILLs
    api_prefix: str = "/api"
    steps_per_example: int | None = None
    faults: tuple[str, ...] = FAULT_KINDS
    server_log: Path | None = None
    # With `start`: run three brokers of a cluster on this PostgreSQL instead of one
    # server; the SIGKILL fault then kills the slot's owner.
    postgres_url: str | None = None

    def __post_init__(self) -> None:
        if (self.url is None) == (not self.start):
            raise ValueError("give exactly one of url or start")
        if self.postgres_url and not self.start:
            raise ValueError("postgres_url needs start")
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}")

    @property
    def kills_allowed(self) -> bool:
        return self.start and "server-kill" in self.faults

    @property
    def fault_kinds(self) -> tuple[str, ...]:
        """The kinds this run injects (no SIGKILL of a server the suite did not start)."""
        return tuple(k for k in self.faults if k != "server-kill" or self.start)
