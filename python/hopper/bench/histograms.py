"""Latency histograms and their standard export formats.

The load generator (Rust, `hopper._engine.LoadGen`) records them and hands them over in
the compressed HdrHistogram V2 encoding, read here with HdrHistogram from PyPI. Values are
recorded in microseconds (1 µs .. 1 h, 3 significant digits) and exported in
milliseconds: `.hgrm` is the text that `outputPercentileDistribution` writes (what the
HdrHistogram plotters read), `.hlog` is the histogram log format (version 1.3), one tagged
line per histogram carrying the compressed base64 encoding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

SIGNIFICANT_DIGITS = 3
US_PER_MS = 1000.0  # the output value unit scaling ratio: recorded µs, exported ms
TICKS_PER_HALF_DISTANCE = 5
SUMMARY_PERCENTILES = (50.0, 90.0, 99.0, 99.9)
HLOG_VERSION = "1.3"


def decode(encoded: str | bytes) -> Any:
    """A histogram from its compressed base64 form (as in `.hlog` lines)."""
    return HdrHistogram.decode(encoded.encode() if isinstance(encoded, str) else encoded)


def encode(hist: Any) -> str:
    return str(hist.encode().decode("ascii"))


def count(hist: Any) -> int:
    return int(hist.get_total_count())


def value_ms(hist: Any, percentile: float) -> float:
    if not count(hist):
        return math.nan
    return int(hist.get_value_at_percentile(percentile)) / US_PER_MS


def max_ms(hist: Any) -> float:
    if not count(hist):
        return math.nan
    return int(hist.get_max_value()) / US_PER_MS


def summary(hist: Any) -> dict[str, float]:
    """p50/p90/p99/p99.9/max and the mean, in ms (NaN when empty)."""
    out = {f"p{p:g}": value_ms(hist, p) for p in SUMMARY_PERCENTILES}
    out["max"] = max_ms(hist)
    out["mean"] = float(hist.get_mean_value()) / US_PER_MS if count(hist) else math.nan
    return out


@dataclass
class Point:
    """One step of the percentile distribution (the rows of a `.hgrm`)."""

    value_ms: float
    percentile: float  # 0..1
    total_count: int


def distribution(hist: Any) -> Iterator[Point]:
    if not count(hist):
        return
    for it in hist.get_percentile_iterator(TICKS_PER_HALF_DISTANCE):
        yield Point(
            int(it.value_iterated_to) / US_PER_MS,
            float(it.percentile_level_iterated_to) / 100.0,
            int(it.total_count_to_this_value),
        )


def write_hgrm(hist: Any, out: TextIO) -> None:
    """The percentile distribution text of HdrHistogram's `outputPercentileDistribution`
    (5 ticks per half distance, values scaled from µs to ms), including its footer."""
    sig = SIGNIFICANT_DIGITS
    out.write(f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}\n\n")
    for p in distribution(hist):
        if p.percentile < 1.0:
            inverse = 1.0 / (1.0 - p.percentile)
            out.write(
                f"{p.value_ms:12.{sig}f} {p.percentile:2.12f} {p.total_count:10d} {inverse:14.2f}\n"
            )
        else:
            out.write(f"{p.value_ms:12.{sig}f} {p.percentile:2.12f} {p.total_count:10d}\n")
    n = count(hist)
    mean = float(hist.get_mean_value()) / US_PER_MS if n else 0.0
    stddev = float(hist.get_stddev()) / US_PER_MS if n else 0.0
    top = int(hist.get_max_value()) / US_PER_MS if n else 0.0
    out.write(f"#[Mean    = {mean:12.{sig}f}, StdDeviation   = {stddev:12.{sig}f}]\n")
    out.write(f"#[Max     = {top:12.{sig}f}, Total count    = {n:12d}]\n")
    out.write(
        f"#[Buckets = {hist.bucket_count:12d}, SubBuckets     = {hist.sub_bucket_count:12d}]\n"
    )


@dataclass
class LogEntry:
    """One `.hlog` line: a tagged histogram over [start_s, start_s + length_s)."""

    tag: str
    start_s: float  # relative to the log's base time
    length_s: float
    hist: Any


def write_hlog(entries: Iterable[LogEntry], out: TextIO, base_time: float | None = None) -> None:
    """The HdrHistogram log format: header comments, the legend, then one line per histogram
    `Tag=<tag>,<start s>,<length s>,<max ms>,<compressed base64 histogram>`."""
    base = time.time() if base_time is None else base_time
    out.write(f"#[Histogram log format version {HLOG_VERSION}]\n")
    stamp = time.strftime("%a %b %d %H:%M:%S %Z %Y", time.localtime(base))
    out.write(f"#[StartTime: {base:.3f} (seconds since epoch), {stamp}]\n")
    out.write(f"#[BaseTime: {base:.3f} (seconds since epoch)]\n")
    out.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
    for e in entries:
        if "," in e.tag or " " in e.tag:
            raise ValueError(f"hlog tags may not contain commas or spaces: {e.tag!r}")
        top = int(e.hist.get_max_value()) / US_PER_MS if count(e.hist) else 0.0
        out.write(f"Tag={e.tag},{e.start_s:.3f},{e.length_s:.3f},{top:.3f},{encode(e.hist)}\n")


@dataclass
class Series:
    """The latencies of one kind of operation in one run, as the load generator measured
    them.

    `hist` is measured from each operation's *intended* start: on the open-loop timetable
    that is its slot (coordinated-omission corrected), in closed loop the moment it was
    sent. `raw` (open loop only) is measured from the moment it was actually sent: the
    uncorrected view a naive client reports.
    """

    name: str
    hist: Any
    raw: Any | None
    jobs: int = 0  # jobs the measured ok operations carried (bulk, pullb: several each)
    errors: int = 0
    error_sample: str = ""
    unmeasured: int = 0  # finished during the warm-up
    empty: int = 0  # pulls that found no job
    elapsed_s: float = 0.0  # end of the warm-up -> last completion

    @classmethod
    def from_report(cls, d: dict[str, Any]) -> Series:
        """One series of the load generator's report."""
        return cls(
            name=str(d["name"]),
            hist=decode(d["hist"]),
            raw=decode(d["raw"]) if d.get("raw") else None,
            jobs=int(d["jobs"]),
            errors=int(d["errors"]),
            error_sample=str(d.get("error_sample") or ""),
            unmeasured=int(d["unmeasured"]),
            empty=int(d["empty"]),
            elapsed_s=float(d["elapsed_s"]),
        )

    @property
    def ok(self) -> int:
        return count(self.hist)

    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def jobs_rate(self) -> float:
        return self.jobs / self.elapsed_s if self.elapsed_s > 0 else 0.0
