"""A percentile plot like HdrHistogram's plotter: latency against percentile on a log-scaled
"1/(1-percentile)" axis (ticks at 0 %, 90 %, 99 %, 99.9 %, ...). Corrected curves are solid,
uncorrected ones dashed; a --compare overlays both servers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from hopper.bench import histograms
from hopper.bench.report import describe, rows
from hopper.bench.runner import RunResult

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _percent_label(x: float) -> str:
    p = 100.0 * (1.0 - 1.0 / x)
    if p <= 0:
        return "0%"
    digits = max(0, round(math.log10(x)) - 2)
    return f"{p:.{digits}f}%"


def write_png(path: Path, results: Sequence[RunResult], title: str | None = None) -> list[Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    fig = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    top_x = 10.0
    curve = 0
    for res in results:
        for row in rows(res):
            xs, ys = [], []
            for p in histograms.distribution(row.hist):
                if p.percentile >= 1.0:
                    continue
                xs.append(1.0 / (1.0 - p.percentile))
                ys.append(p.value_ms)
            if not xs:
                continue
            top_x = max(top_x, xs[-1])
            color = COLORS[(curve if row.kind != "uncorrected" else curve - 1) % len(COLORS)]
            if row.kind != "uncorrected":
                curve += 1
            label = f"{row.label} {row.series}"
            if row.kind != "closed":
                label += f" ({'uncorrected' if row.kind == 'uncorrected' else 'corrected'})"
            ax.plot(
                xs,
                ys,
                color=color,
                linestyle="--" if row.kind == "uncorrected" else "-",
                linewidth=1.6,
                label=label,
            )
    ax.set_xscale("log")
    decades = max(1, math.ceil(math.log10(top_x)))
    ticks = [10.0**k for k in range(decades + 1)]
    ax.set_xlim(1, ticks[-1])
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([_percent_label(t) for t in ticks])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("Percentile")
    ax.set_ylabel("Latency (ms)")
    ax.set_title(title or "Latency by Percentile Distribution", fontsize=11)
    if results:
        fig.text(0.5, 0.01, describe(results[0]), ha="center", fontsize=7, color="dimgray")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return [path]
