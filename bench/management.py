"""Management API on a big queue: counts, pages and search with --jobs (default 1,000,000)
jobs in one queue, timed as a client sees them over loopback (an upper bound on the
server-side time: it includes HTTP and JSON).

Starts `hopper serve --memory` on a free 127.0.0.1 port, fills one queue through the bulk
endpoint (batches of 1000, ~90-byte payloads, one job in 1000 with a rare word), then
times each request --repeat times and reports the median and the max. With --runs N
this is done N times, each on a new server; the table shows the median of the runs'
medians and the largest max:

  counts        GET /api/queues/<q>                     (detail: counts per state)
  queue list    GET /api/queues
  first page    GET /api/queues/<q>/jobs?state=waiting&start=0&end=100
  deep page     GET /api/queues/<q>/jobs?state=waiting&start=<jobs/2>&end=<jobs/2+100>
  id search     GET /api/search?q=<id>
  payload       GET /api/search?type=payload&queue=<q>&q=<word in no job>  (full scan)
  payload hit   GET /api/search?type=payload&queue=<q>&q=<rare word>       (first 50 hits)

    .venv/bin/python bench/management.py [--jobs 1000000] [--repeat 20] [--runs 1] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from hopper.server_process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "management.json"
QUEUE = "big"


def fill(client: httpx.Client, jobs: int) -> float:
    t0 = time.perf_counter()
    for batch in range(jobs // 1000):
        body = [
            {
                "data": {
                    "to": f"user{batch}-{i}@example.com",
                    "subject": "needle-in-haystack" if i == 0 else "Welcome aboard!!!",
                    "n": batch * 1000 + i,
                }
            }
            for i in range(1000)
        ]
        r = client.post(f"/queues/{QUEUE}/jobs/bulk", json={"jobs": body})
        r.raise_for_status()
    return time.perf_counter() - t0


def timed(client: httpx.Client, path: str, repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "max_ms": round(max(samples), 3),
        "bytes": len(r.content),
    }


def run_once(jobs: int, repeat: int) -> tuple[float, dict[str, dict[str, float]]]:
    """One server, filled with `jobs` jobs: (fill seconds, request name -> timings)."""
    log = Path(tempfile.mkdtemp(prefix="hopper-bench-management-")) / "server.log"
    with (
        ServerProcess.hopper(["--memory"], log=log) as server,
        httpx.Client(base_url=server.url, timeout=60) as c,
    ):
        fill_s = fill(c, jobs)
        some_id = c.get(f"/api/queues/{QUEUE}/jobs?start=0&end=1").json()["data"][0]["id"]
        half = jobs // 2
        cases = {
            "counts": f"/api/queues/{QUEUE}",
            "queue list": "/api/queues",
            "first page (100)": f"/api/queues/{QUEUE}/jobs?state=waiting&start=0&end=100",
            "deep page (100)": (
                f"/api/queues/{QUEUE}/jobs?state=waiting&start={half}&end={half + 100}"
            ),
            "id search": f"/api/search?q={some_id}",
            "payload search, no hit (full scan)": (
                f"/api/search?type=payload&queue={QUEUE}&q=zzz-absent"
            ),
            "payload search, 50 hits": f"/api/search?type=payload&queue={QUEUE}&q=needle-in",
        }
        return fill_s, {name: timed(c, path, repeat) for name, path in cases.items()}


def combine(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per request: the median of the runs' medians, the largest max."""
    return {
        name: {
            "median_ms": round(statistics.median(r[name]["median_ms"] for r in runs), 3),
            "max_ms": max(r[name]["max_ms"] for r in runs),
            "bytes": runs[0][name]["bytes"],
            "run_medians_ms": [r[name]["median_ms"] for r in runs],
        }
        for name in runs[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    args = parser.parse_args()
    outcomes = [run_once(args.jobs, args.repeat) for _ in range(args.runs)]
    fill_s = statistics.median(fill for fill, _ in outcomes)
    results = combine([timings for _, timings in outcomes])
    print(
        f"\n{args.jobs:,} waiting jobs in one queue (filled in {fill_s:.1f} s); "
        f"ms per request, {args.repeat} requests, median of {args.runs} run(s)\n"
    )
    print("| request | median ms | max ms | response bytes |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['median_ms']} | {r['max_ms']} | {r['bytes']:,} |")
    args.out.write_text(
        json.dumps(
            {
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "jobs": args.jobs,
                "repeat": args.repeat,
                "runs": args.runs,
                "load_average": os.getloadavg(),
                "fill_seconds": round(fill_s, 2),
                "results": results,
                "method": __doc__,
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "kernel": platform.release(),
                },
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
