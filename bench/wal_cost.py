"""What the write-ahead log costs the job server: `hopper serve --memory` side by side with
the default persistent server (`--data-dir`, `--fsync interval`), and optionally other
policies, on the same wrk loads as bench/server.py:

  push c64      wrk, POST /queues/<q>/jobs, ~90-byte payload, 64 connections
  pull+ack c16  wrk, GET /queues/<q>/jobs then POST /jobs/<id>/ack, 16 connections
                (the queue pre-filled through the bulk endpoint first)

For each of --runs runs and each scenario, every mode gets a fresh server (a fresh data
directory in the scratch dir) and is measured for --duration seconds after --warmup; the
order of the modes alternates between runs. Reports the median per mode and each
persistent mode's ratio to --memory (target: >= 0.9 for the default). Every load is
bounded in time and count, all traffic goes to 127.0.0.1, servers are always stopped.

    .venv/bin/python bench/wal_cost.py [--runs 3] [--duration 10] [--warmup 2]
        [--modes memory,interval] [--out bench/results/wal_cost.json]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server as S  # bench/server.py: process, wrk and report helpers

MODES = {
    "memory": ["--memory"],
    "interval": ["--fsync", "interval"],
    "never": ["--fsync", "never"],
    "always": ["--fsync", "always"],
}


def start(mode: str, scratch: Path, tag: str):
    port = S.free_port()
    cmd = [*S.hopper_cmd(), "serve", "--host", "127.0.0.1", "--port", str(port), *MODES[mode]]
    if mode != "memory":
        data = scratch / f"data-{tag}"
        shutil.rmtree(data, ignore_errors=True)
        cmd += ["--data-dir", str(data)]
    server = S.spawn(cmd, port=port, cwd=scratch, log=scratch / f"hopper-{tag}.log")
    if not server.wait_healthy(time.monotonic() + 30):
        raise RuntimeError(f"hopper ({mode}) did not answer within 30 s")
    return server, port, cmd


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--modes", default="memory,interval")
    p.add_argument("--push-conns", type=int, default=64)
    p.add_argument("--pull-conns", type=int, default=16)
    p.add_argument("--prefill-rate", type=float, default=40_000)
    p.add_argument("--out", type=Path, default=S.HERE / "results" / "wal_cost.json")
    args = p.parse_args()
    args.wrk_threads = 1
    modes = [m for m in args.modes.split(",") if m]
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    atexit.register(S.stop_all)
    scenarios = [
        S.Scenario(f"push_c{args.push_conns}", f"HTTP push, {args.push_conns} conn", "pushes/s"),
        S.Scenario(
            f"pullack_c{args.pull_conns}", f"HTTP pull+ack, {args.pull_conns} conn", "pairs/s"
        ),
    ]
    info = S.machine_info()
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hopper-bench-wal-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    samples: dict = {sc.key: {m: [] for m in modes} for sc in scenarios}
    commands: dict = {}
    for run in range(args.runs):
        order = modes if run % 2 == 0 else modes[::-1]
        for sc in scenarios:
            for mode in order:
                tag = f"run{run + 1}-{sc.key}-{mode}"
                server, port, cmd = start(mode, scratch, tag)
                try:
                    res = S.run_scenario(sc, mode, port, server.pid, args, scratch, run)
                finally:
                    S.stop(server)
                res["run"] = run + 1
                res["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
                samples[sc.key][mode].append(res)
                commands[mode] = shlex.join(cmd)
                print(
                    f"run {run + 1}/{args.runs} {sc.key:<12} {mode:<9} "
                    f"{S.fmt_rate(res.get('rate')):>10} {sc.unit:<8} "
                    f"p50/p99 {S.fmt_lat(res.get('p50_us'), res.get('p99_us'))}  "
                    f"srv {res.get('server_cores', 0):.2f} gen {res.get('generator_cores', 0):.2f} "
                    f"cores  load {' '.join(res['loadavg'])}",
                    file=sys.stderr,
                )
    shutil.rmtree(scratch, ignore_errors=True)

    summary: dict = {}
    print(f"\n| scenario | {' | '.join(modes)} | " + " | ".join(f"{m}/memory" for m in modes[1:]))
    print("|---" * (2 * len(modes)) + "|")
    for sc in scenarios:
        med = {m: S.med(samples[sc.key][m], "rate") for m in modes}
        ratios = {
            m: (med[m] / med["memory"]) if med.get("memory") and med[m] else None
            for m in modes
            if m != "memory"
        }
        summary[sc.key] = {"median": med, "ratio_to_memory": ratios, "unit": sc.unit}
        cells = [S.fmt_rate(med[m]) for m in modes]
        cells += [f"{r:.3f}" if r else "n/a" for r in ratios.values()]
        print(f"| {sc.label} ({sc.unit}) | " + " | ".join(cells) + " |")
    out = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": info,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "servers": commands,
        "summary": summary,
        "samples": samples,
        "note": "medians of the runs; rates from wrk; a 2-core machine shared with other work",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
