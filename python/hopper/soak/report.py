"""The summary of a run: printed as text, optionally written as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Report:
    result: str = "PASS"  # PASS, FAIL (an invariant is violated) or ERROR (the suite's own)
    url: str = ""
    started: bool = False
    fsync: str = ""
    stall_interval_ms: int = 0
    duration_s: float = 0.0
    elapsed_s: float = 0.0
    examples: int = 0
    steps: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    machine_jobs: int = 0
    load: dict[str, int] = field(default_factory=dict)
    allowed: dict[str, int] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: int = 0
    max_rss_mb: int = 0
    server_starts: int = 0
    violation: dict[str, str] | None = None
    error: str | None = None
    trail: list[str] = field(default_factory=list)
    data_dir: str | None = None
    # A cluster run: its brokers, namespace and the owners killed, in order.
    cluster: str | None = None
    server_log: str | None = None

    @property
    def exit_code(self) -> int:
        return {"PASS": 0, "FAIL": 1}.get(self.result, 2)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "checks_total": sum(self.checks.values())}

    def text(self) -> str:
        where = (
            f"{self.cluster or 'server'} started here (fsync {self.fsync}, stall interval "
            f"{self.stall_interval_ms} ms, {self.server_starts} starts)"
            if self.started
            else f"running server (its fsync policy taken as {self.fsync})"
        )
        header = (
            f"hopper soak: {self.result} after {self.elapsed_s:.1f} s "
            f"(asked {self.duration_s:g} s) against {self.url or '(no server)'}"
        )
        if self.steps == 0 and self.error is not None:
            return f"{header}\n  ERROR             {self.error}\n  result            {self.result}"
        faults = ", ".join(f"{k} {v}" for k, v in self.faults.items()) or "none"
        checks = ", ".join(f"{k} {v}" for k, v in self.checks.items())
        load = self.load
        lines = [
            header,
            f"  target            {where}",
            f"  state machine     {self.examples} examples, {self.steps} steps, "
            f"{self.machine_jobs} jobs",
            f"  load              {load.get('pushed', 0)} jobs pushed, {load.get('delivered', 0)} "
            f"delivered, {load.get('acked', 0)} acked, {load.get('failed', 0)} failed for good "
            f"({load.get('queues_retired', 0)} queues verified and removed)",
            f"  faults injected   {faults}",
            f"  invariant checks  {sum(self.checks.values())}: {checks}",
            f"  allowed by policy {self.allowed.get('lost_unpromised', 0)} unpromised pushes "
            f"lost, {self.allowed.get('acks_undone', 0)} acks undone, "
            f"{self.allowed.get('redelivered', 0)} acked jobs delivered again (all after a "
            "SIGKILL, none under fsync always)",
            f"  server memory     peak RSS {self.peak_rss_mb} MB (bound {self.max_rss_mb} MB)",
        ]
        if self.violation is not None:
            lines.append(
                f"  VIOLATION         {self.violation['invariant']}: {self.violation['message']}"
            )
        if self.error is not None:
            lines.append(f"  ERROR             {self.error}")
        if self.trail and self.result != "PASS":
            lines.append("  last steps:")
            lines.extend(f"    {t}" for t in self.trail)
        if self.server_log and self.result != "PASS":
            lines.append(f"  server log        {self.server_log}")
        if self.data_dir and self.result != "PASS":
            lines.append(f"  data directory    {self.data_dir} (kept)")
        lines.append(f"  result            {self.result}")
        return "\n".join(lines)
