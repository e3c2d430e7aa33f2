"""Writes the histograms of a run (or a --compare pair) to `.hgrm`, `.hlog` and JSON files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from hopper.bench import histograms
from hopper.bench.histograms import LogEntry
from hopper.bench.report import Row, rows, to_json
from hopper.bench.runner import RunResult


def all_rows(results: Sequence[RunResult]) -> list[Row]:
    return [r for res in results for r in rows(res)]


def hgrm_paths(path: Path, results: Sequence[RunResult]) -> list[tuple[Path, Row]]:
    """The first histogram (first server, first series, corrected or closed loop) goes to
    `path` itself; every other one to `<stem>.<server>.<series>[.uncorrected]<suffix>`."""
    out: list[tuple[Path, Row]] = []
    for i, row in enumerate(all_rows(results)):
        p = path if i == 0 else path.with_name(f"{path.stem}.{row.tag}{path.suffix or '.hgrm'}")
        out.append((p, row))
    return out


def write_hgrm(path: Path, results: Sequence[RunResult]) -> list[Path]:
    written = []
    path.parent.mkdir(parents=True, exist_ok=True)
    for p, row in hgrm_paths(path, results):
        with p.open("w") as f:
            histograms.write_hgrm(row.hist, f)
        written.append(p)
    return written


def write_hlog(path: Path, results: Sequence[RunResult]) -> list[Path]:
    """One file, one `Tag=<server>.<series>[.uncorrected]` line per histogram; each line's
    start and length are its run's measurement window relative to the first run."""
    base = min(res.started_at for res in results)
    entries = []
    for res in results:
        for row in rows(res):
            start = res.started_at - base + res.plan.warmup_s
            entries.append(LogEntry(row.tag, start, row.rec.elapsed_s, row.hist))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        histograms.write_hlog(entries, f, base_time=base)
    return [path]


def write_json(path: Path, results: Sequence[RunResult], command: str) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(results, command), indent=2) + "\n")
    return [path]
