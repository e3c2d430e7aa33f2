"""The summary table (and the ratios of a --compare), and the JSON export."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hopper.bench import histograms
from hopper.bench.histograms import Series
from hopper.bench.runner import RunResult

COLUMNS = ("server", "series", "latency", "count", "rate/s", "errors", "p50", "p90", "p99")
COLUMNS_TAIL = ("p99.9", "max", "gen CPU")


@dataclass
class Row:
    """One histogram of one run: corrected (or closed loop) or, in open loop, uncorrected."""

    label: str
    series: str
    kind: str  # "closed" | "corrected" | "uncorrected"
    rec: Series
    hist: Any
    generator_cpu: str  # the generator's CPU share over its run, e.g. '23%'

    @property
    def tag(self) -> str:
        """A file / log tag: <server>.<series>[.uncorrected]."""
        base = f"{_safe(self.label)}.{self.series}"
        return base + ".uncorrected" if self.kind == "uncorrected" else base


def _safe(label: str) -> str:
    """A label usable in file names and `.hlog` tags (no commas, spaces, colons, slashes)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "server"


def cpu_text(result: RunResult) -> str:
    """The generator's CPU share (% of one core) over its run, or '-' where unknown."""
    share = result.generator.cpu_share
    return "-" if share is None else f"{100 * share:.0f}%"


def rows(result: RunResult) -> Iterator[Row]:
    cpu = cpu_text(result)
    for rec in result.series:
        if result.open_loop:
            yield Row(result.label, rec.name, "corrected", rec, rec.hist, cpu)
            yield Row(result.label, rec.name, "uncorrected", rec, rec.raw, cpu)
        else:
            yield Row(result.label, rec.name, "closed", rec, rec.hist, cpu)


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.3f}"


def _ratio(b: float, a: float) -> str:
    if math.isnan(a) or math.isnan(b) or a == 0:
        return "-"
    return f"{b / a:.2f}x"


KIND_TEXT = {
    "closed": "closed loop",
    "corrected": "from intended",
    "uncorrected": "from sent",
}


def _cells(row: Row) -> list[str]:
    s = histograms.summary(row.hist)
    return [
        row.label,
        row.series,
        KIND_TEXT[row.kind],
        f"{histograms.count(row.hist):,}",
        f"{row.rec.rate():,.0f}",
        f"{row.rec.errors:,}",
        _ms(s["p50"]),
        _ms(s["p90"]),
        _ms(s["p99"]),
        _ms(s["p99.9"]),
        _ms(s["max"]),
        row.generator_cpu,
    ]


def _ratio_cells(b: Row, a: Row) -> list[str]:
    sb, sa = histograms.summary(b.hist), histograms.summary(a.hist)
    return [
        f"{b.label}/{a.label}",
        b.series,
        KIND_TEXT[b.kind],
        "",
        _ratio(b.rec.rate(), a.rec.rate()),
        "",
        *(_ratio(sb[k], sa[k]) for k in ("p50", "p90", "p99", "p99.9", "max")),
        "",
    ]


def describe(result: RunResult) -> str:
    plan, opts = result.plan, result.options
    if opts.transport == "http":
        conns = f"{opts.connections} connection(s)"
    else:
        unit = "socket(s)" if opts.transport == "ws" else "connection(s)"
        conns = f"{opts.connections} {unit} x window {opts.window}"
    extent = f"{plan.duration_s:g} s" if plan.duration_s is not None else f"{plan.count:,} ops"
    loop = f"open loop at {plan.rate:,.0f}/s" if plan.rate else "closed loop"
    extras = [f"{opts.lanes():,} in flight"]
    if plan.scenario == "e2e":
        extras.append(f"{plan.workers} worker connection(s)")
    if plan.scenario in ("bulk", "pullb"):
        extras.append(f"{plan.batch} jobs per request")
    if plan.scenario == "mixed":
        extras.append(f"push:pullack {plan.mix[0]}:{plan.mix[1]}")
    if len(plan.queues) > 1:
        extras.append(f"{len(plan.queues)} queues")
    if plan.payload_bytes:
        extras.append(f"{plan.payload_bytes:,}-byte payload")
    threads = result.generator.threads
    return (
        f"scenario {plan.scenario} over {opts.transport.upper()}, {conns} "
        f"({', '.join(extras)}), {loop}, {extent} after {plan.warmup_s:g} s warm-up; "
        f"latencies in ms; gen CPU = the load generator's CPU time over its run "
        f"({threads} thread{'s' if threads != 1 else ''}; 100% = one core)"
    )


def table(results: Sequence[RunResult]) -> str:
    all_rows = [r for res in results for r in rows(res)]
    lines = [_cells(r) for r in all_rows]
    if len(results) == 2:
        base = {(r.series, r.kind): r for r in rows(results[0])}
        for r in rows(results[1]):
            a = base.get((r.series, r.kind))
            if a is not None:
                lines.append(_ratio_cells(r, a))
    header = [*COLUMNS, *COLUMNS_TAIL]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    right = {i for i in range(3, len(header))}

    def fmt(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(out) + " |"

    text = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    text += [fmt(line) for line in lines]
    return "\n".join(text)


def render(results: Sequence[RunResult]) -> str:
    out = [describe(results[0]), "", table(results)]
    for res in results:
        for rec in res.series:
            if rec.error_sample:
                out.append(f"{res.label} {rec.name}: first error: {rec.error_sample}")
            if rec.empty:
                out.append(f"{res.label} {rec.name}: {rec.empty:,} pulls found no job")
            if rec.jobs != rec.ok:  # several jobs an operation (bulk, pullb)
                out.append(
                    f"{res.label} {rec.name}: {rec.jobs:,} jobs, {rec.jobs_rate():,.0f} jobs/s"
                )
        out += [f"{res.label}: {note}" for note in res.notes]
    if len(results) == 2:
        out.append(
            f"ratios are {results[1].label} / {results[0].label} "
            "(rate > 1x: second faster; latency < 1x: second lower)"
        )
    return "\n".join(out)


def to_json(results: Sequence[RunResult], command: str) -> dict[str, Any]:
    def series(row: Row) -> dict[str, Any]:
        s = histograms.summary(row.hist)
        return {
            "name": row.series,
            "latency": row.kind,
            "count": histograms.count(row.hist),
            "errors": row.rec.errors,
            "first_error": row.rec.error_sample or None,
            "empty_pulls": row.rec.empty,
            "warmup_ops": row.rec.unmeasured,
            "rate_per_s": row.rec.rate(),
            "jobs": row.rec.jobs,
            "jobs_per_s": row.rec.jobs_rate(),
            "elapsed_s": row.rec.elapsed_s,
            "latency_ms": {k: (None if math.isnan(v) else v) for k, v in s.items()},
            "hdr_histogram": histograms.encode(row.hist),
            "hdr_histogram_unit": "microseconds",
        }

    first = results[0]
    plan, opts = first.plan, first.options
    return {
        "command": command,
        "scenario": plan.scenario,
        "transport": opts.transport,
        "config": {
            "connections": opts.connections,
            "window": opts.window if opts.transport != "http" else None,
            "in_flight_per_side": opts.lanes(),
            "workers": plan.workers if plan.scenario == "e2e" else None,
            "threads": opts.threads,
            "queues": len(plan.queues),
            "payload_bytes": plan.payload_bytes or None,
            "batch": plan.batch if plan.scenario in ("bulk", "pullb") else None,
            "mix": list(plan.mix) if plan.scenario == "mixed" else None,
            "rate_per_s": plan.rate,
            "open_loop": plan.rate is not None,
            "duration_s": plan.duration_s,
            "count": plan.count,
            "warmup_s": plan.warmup_s,
            "timeout_s": plan.timeout_s,
        },
        "method": {
            "latency_closed_loop": "operation sent -> answered",
            "latency_corrected": "intended send time on the fixed open-loop timetable -> "
            "answered (coordinated-omission corrected)",
            "latency_uncorrected": "actual send time -> answered",
            "e2e": "push time (intended / actual) -> ack answered by a worker",
            "pullack": "pull sent -> ack of that job answered",
            "bulk": "one request of `batch` jobs sent -> answered; rate in requests/s",
            "pullb": "PULLB of up to `batch` jobs sent -> ACKB of the jobs it got answered; "
            "rate in batches/s, jobs_per_s in jobs",
            "generator_cpu_share": "user+system CPU time of the load generator's threads / "
            "the run's wall time (1.0 = one core)",
            "rate": "measured operations that succeeded / (last completion - end of warm-up)",
        },
        "runs": [
            {
                "label": res.label,
                "url": res.url,
                "started_at": res.started_at,
                "wall_s": res.wall_s,
                "generator": {
                    "threads": res.generator.threads,
                    "cpu_s": res.generator.cpu_s,
                    "wall_s": res.generator.wall_s,
                    "cpu_share": res.generator.cpu_share,
                },
                "notes": res.notes,
                "series": [series(r) for r in rows(res)],
            }
            for res in results
        ],
    }
