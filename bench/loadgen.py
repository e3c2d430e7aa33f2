"""`hopper bench` (the Rust load generator) against wrk, on the same servers in the same run.

For each of --runs runs it starts the servers fresh and measures, one after the other:

  bare c64     the bare Granian ASGI app (bench/bare_app.py --parse, as in bench/server.py):
               wrk (bench/wrk/push.lua, 1 thread) and `hopper bench -s push` (1 thread),
               64 connections each: rate, and the CPU of each generator process (all its
               threads, Python start-up included for hopper bench: /proc via rusage)
  hopper c64   `hopper serve` (the same command as bench/server.py): push at 64 connections,
               wrk and hopper bench: rate and p50
  open loop    hopper bench at 50 % and 120 % of the capacity hopper bench measured in the
               c64 cell of the same run (open loop, --rate), the 120 % cell for --duration/2
               and --duration: latency from the intended send time (corrected) and from the
               actual send (uncorrected). Corrected latency grows with the run's length at
               120 %; uncorrected does not.

Then it reports medians over runs and writes JSON (--out). Targets (issue 19), judged on the
median over runs of hopper bench / wrk within each run (paired; the ratio of the medians is
recorded too): bare: rate >= 90 % of wrk's with CPU <= 1.2x wrk's; hopper c64: rate within
5 % of wrk's and p50 within 20 %. All traffic goes to 127.0.0.1; every generator run is
bounded in time.

    .venv/bin/python bench/loadgen.py [--runs 3] [--duration 10] [--out bench/results/loadgen.json]
    .venv/bin/python bench/loadgen.py --runs 1 --duration 2      # smoke run
    .venv/bin/python bench/loadgen.py --wait-quiet 0.7            # each run waits for load < 0.7
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import server as S  # bench/server.py: servers, wrk, CPU sampling, machine info

CONNS = 64
Sample = dict[str, Any]  # one cell of one run (and the run's load, under 'load1')


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_quiet(limit: float, max_wait_s: float) -> float:
    """Waits (bounded) until the 1-minute load is below `limit`; returns the load then."""
    deadline = time.monotonic() + max_wait_s
    while (load := load1()) >= limit and time.monotonic() < deadline:
        print(f"load {load:.2f} >= {limit}: waiting", file=sys.stderr)
        time.sleep(20)
    return load


def hopper_bench_cmd(url: str, seconds: float, out: Path, extra: list[str]) -> list[str]:
    return [
        *S.hopper_cmd(),
        "bench",
        "--url",
        url,
        "-s",
        "push",
        "-c",
        str(CONNS),
        "--threads",
        "1",
        "--duration",
        f"{seconds:g}",
        "--warmup",
        "0",
        "--quiet",
        "--json",
        str(out),
        *extra,
    ]


def run_wrk(port: int, server_pid: int, seconds: float) -> Sample:
    cmd = S.wrk_cmd("push.lua", port, 1, CONNS, seconds)
    env = S.scenario_env(
        {"BENCH_PATH": "/queues/wrk/jobs", "BENCH_MAX_REQ": str(S.MAX_REQ_PER_THREAD)}
    )
    res = S.measure(cmd, env, server_pid, seconds)
    return {
        "rate": res["rate"],
        "p50_ms": res["p50_us"] / 1000,
        "p99_ms": res["p99_us"] / 1000,
        "bad": res["bad"],
        "socket_errors": res["errors"],
        "generator_cores": res["generator_cores"],
        "server_cores": res["server_cores"],
        "wall_s": res["wall_s"],
        "command": shlex.join(cmd),
    }


def run_hopper_bench(
    url: str, server_pid: int, seconds: float, scratch: Path, extra: list[str] | None = None
) -> Sample:
    out = scratch / f"hb-{time.monotonic_ns()}.json"
    cmd = hopper_bench_cmd(url, seconds, out, extra or [])
    with S.ChildCPU() as cpu:
        _, srv_cores, _, wall = S.run_measured(cmd, dict(os.environ), server_pid, seconds + 120)
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    first = run["series"][0]
    sample: Sample = {
        "rate": first["rate_per_s"],
        "p50_ms": first["latency_ms"]["p50"],
        "p99_ms": first["latency_ms"]["p99"],
        "max_ms": first["latency_ms"]["max"],
        "errors": first["errors"],
        # the whole `hopper bench` process (interpreter start, report and exports included)
        "generator_cores": cpu.seconds / wall,
        "generator_cpu_s": cpu.seconds,
        # the load generator's own threads over the measured phase, as the report says
        "generator_threads_cpu_share": run["generator"]["cpu_share"],
        "server_cores": srv_cores,
        "wall_s": wall,
        "command": shlex.join(cmd),
    }
    if len(run["series"]) > 1:
        raw = run["series"][1]
        sample["uncorrected"] = {
            "p50_ms": raw["latency_ms"]["p50"],
            "p99_ms": raw["latency_ms"]["p99"],
            "max_ms": raw["latency_ms"]["max"],
        }
    out.unlink()
    return sample


def both_generators(
    i: int,
    name: str,
    srv: S.ServerProcess,
    port: int,
    args: argparse.Namespace,
    scratch: Path,
    hb_extra: list[str],
) -> dict[str, Sample]:
    """wrk and hopper bench against one started server, in this run's order (alternating
    by run), as `<name>_wrk` and `<name>_hb`."""
    if not srv.wait_healthy(time.monotonic() + 30):
        raise RuntimeError(f"{name}: the server did not start")
    pid = srv.proc.pid  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    samples: dict[str, Sample] = {}
    for who in ["wrk", "hb"] if i % 2 == 0 else ["hb", "wrk"]:
        if who == "wrk":
            samples[f"{name}_wrk"] = run_wrk(port, pid, args.duration)
        else:
            samples[f"{name}_hb"] = run_hopper_bench(url, pid, args.duration, scratch, hb_extra)
    return samples


def one_run(i: int, args: argparse.Namespace, scratch: Path) -> dict[str, Sample]:
    samples: dict[str, Sample] = {}
    tag = f"r{i}"
    # bare Granian ASGI app: ceiling of the HTTP stack, the generators compared
    port = S.free_port()
    bare = S.spawn(
        S.bare_app_cmd(port, "asgi", True),
        port=port,
        cwd=S.HERE,
        log=scratch / f"bare-{tag}.log",
        health_path="/",
    )
    try:
        samples |= both_generators(i, "bare", bare, port, args, scratch, ["--keep"])
    finally:
        S.stop(bare)
    # hopper serve: push at 64 connections, then the open loop around its capacity
    port = S.free_port()
    srv = S.spawn(
        S.hopper_serve_cmd(port, args.hopper_arg),
        port=port,
        cwd=scratch,
        log=scratch / f"hopper-{tag}.log",
    )
    try:
        samples |= both_generators(i, "hopper", srv, port, args, scratch, [])
        pid = srv.proc.pid  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        capacity = samples["hopper_hb"]["rate"]
        for key, share, secs in (
            ("open_50", 0.5, args.duration),
            ("open_120_short", 1.2, args.duration / 2),
            ("open_120", 1.2, args.duration),
        ):
            rate = share * capacity
            s = run_hopper_bench(url, pid, secs, scratch, ["--rate", f"{rate:.0f}"])
            s.update(target_rate=rate, capacity=capacity, share=share, duration_s=secs)
            samples[key] = s
    finally:
        S.stop(srv)
    return samples


def med(runs: list[dict[str, Sample]], cell: str, field: str, sub: str | None = None) -> float:
    vals = [r[cell][sub][field] if sub else r[cell][field] for r in runs]
    return float(statistics.median(vals))


def paired(runs: list[dict[str, Sample]], a: str, b: str, field: str) -> float:
    """The median over runs of a[field] / b[field] within each run (a paired comparison:
    what drifts between runs, such as other work on the machine, touches both alike)."""
    return float(statistics.median(r[a][field] / r[b][field] for r in runs))


def summarize(runs: list[dict[str, Sample]]) -> dict[str, Any]:
    m = lambda cell, field, sub=None: med(runs, cell, field, sub)  # noqa: E731
    # the targets are judged on the paired ratios (hopper bench / wrk in the same run)
    bare_rate = paired(runs, "bare_hb", "bare_wrk", "rate")
    bare_cpu = paired(runs, "bare_hb", "bare_wrk", "generator_cores")
    hop_rate = paired(runs, "hopper_hb", "hopper_wrk", "rate")
    hop_p50 = paired(runs, "hopper_hb", "hopper_wrk", "p50_ms")
    out: dict[str, Any] = {
        "bare_c64": {
            "wrk_rate": m("bare_wrk", "rate"),
            "hopper_bench_rate": m("bare_hb", "rate"),
            "rate_ratio": bare_rate,
            "rate_ratio_of_medians": m("bare_hb", "rate") / m("bare_wrk", "rate"),
            "wrk_cores": m("bare_wrk", "generator_cores"),
            "hopper_bench_cores": m("bare_hb", "generator_cores"),
            "hopper_bench_generator_threads_cores": m("bare_hb", "generator_threads_cpu_share"),
            "cpu_ratio": bare_cpu,
            "cpu_ratio_of_medians": m("bare_hb", "generator_cores")
            / m("bare_wrk", "generator_cores"),
            "target": "rate ratio >= 0.90 and cpu ratio <= 1.2",
            "holds": bare_rate >= 0.90 and bare_cpu <= 1.2,
        },
        "hopper_c64": {
            "wrk_rate": m("hopper_wrk", "rate"),
            "hopper_bench_rate": m("hopper_hb", "rate"),
            "rate_ratio": hop_rate,
            "rate_ratio_of_medians": m("hopper_hb", "rate") / m("hopper_wrk", "rate"),
            "wrk_p50_ms": m("hopper_wrk", "p50_ms"),
            "hopper_bench_p50_ms": m("hopper_hb", "p50_ms"),
            "p50_ratio": hop_p50,
            "p50_ratio_of_medians": m("hopper_hb", "p50_ms") / m("hopper_wrk", "p50_ms"),
            "wrk_cores": m("hopper_wrk", "generator_cores"),
            "hopper_bench_cores": m("hopper_hb", "generator_cores"),
            "target": "rate within 5 % of wrk's, p50 within 20 %",
            "holds": abs(hop_rate - 1) <= 0.05 and abs(hop_p50 - 1) <= 0.20,
        },
    }
    for key in ("open_50", "open_120_short", "open_120"):
        out[key] = {
            "share_of_capacity": runs[0][key]["share"],
            "duration_s": runs[0][key]["duration_s"],
            "target_rate": m(key, "target_rate"),
            "rate": m(key, "rate"),
            "corrected_p50_ms": m(key, "p50_ms"),
            "corrected_p99_ms": m(key, "p99_ms"),
            "corrected_max_ms": m(key, "max_ms"),
            "uncorrected_p50_ms": m(key, "p50_ms", "uncorrected"),
            "uncorrected_p99_ms": m(key, "p99_ms", "uncorrected"),
            "uncorrected_max_ms": m(key, "max_ms", "uncorrected"),
        }
    short, full = out["open_120_short"], out["open_120"]
    out["open_120_grows"] = {
        "corrected_p99_ratio_full_to_half": full["corrected_p99_ms"] / short["corrected_p99_ms"],
        "uncorrected_p99_ratio_full_to_half": full["uncorrected_p99_ms"]
        / short["uncorrected_p99_ms"],
        "note": "at 120 % of capacity the backlog grows through the run: doubling the run "
        "roughly doubles the corrected tail, while the uncorrected one stays put",
    }
    return out


def print_summary(s: dict[str, Any]) -> None:
    b, h = s["bare_c64"], s["hopper_c64"]
    print("\n| cell | wrk (median) | hopper bench (median) | ratio (paired) | target | holds |")
    print("|---|---:|---:|---:|---|---|")
    print(
        f"| bare ASGI c64 rate | {b['wrk_rate']:,.0f}/s | {b['hopper_bench_rate']:,.0f}/s | "
        f"{b['rate_ratio']:.2f} | >= 0.90 | {b['rate_ratio'] >= 0.9} |"
    )
    print(
        f"| bare ASGI c64 generator CPU | {b['wrk_cores']:.2f} cores | "
        f"{b['hopper_bench_cores']:.2f} cores | {b['cpu_ratio']:.2f} | <= 1.2 | "
        f"{b['cpu_ratio'] <= 1.2} |"
    )
    print(
        f"| hopper c64 push rate | {h['wrk_rate']:,.0f}/s | {h['hopper_bench_rate']:,.0f}/s | "
        f"{h['rate_ratio']:.3f} | 0.95..1.05 | {abs(h['rate_ratio'] - 1) <= 0.05} |"
    )
    print(
        f"| hopper c64 push p50 | {h['wrk_p50_ms']:.2f} ms | {h['hopper_bench_p50_ms']:.2f} ms | "
        f"{h['p50_ratio']:.2f} | 0.8..1.2 | {abs(h['p50_ratio'] - 1) <= 0.2} |"
    )
    print("\n| open loop | rate | corrected p50 / p99 / max | uncorrected p50 / p99 / max |")
    print("|---|---:|---:|---:|")
    for key in ("open_50", "open_120_short", "open_120"):
        o = s[key]
        print(
            f"| {o['share_of_capacity']:.0%} of capacity, {o['duration_s']:g} s "
            f"(asked {o['target_rate']:,.0f}/s) | {o['rate']:,.0f}/s | "
            f"{o['corrected_p50_ms']:.2f} / {o['corrected_p99_ms']:.2f} / "
            f"{o['corrected_max_ms']:.2f} ms | {o['uncorrected_p50_ms']:.2f} / "
            f"{o['uncorrected_p99_ms']:.2f} / {o['uncorrected_max_ms']:.2f} ms |"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per generator run")
    p.add_argument("--out", type=Path, help="results JSON")
    p.add_argument(
        "--wait-quiet",
        type=float,
        metavar="LOAD",
        help="before each run, wait (up to --max-wait s in all) until the 1-minute load "
        "average is below LOAD; exit 3 without a result if it never is",
    )
    p.add_argument("--max-wait", type=float, default=1200.0)
    p.add_argument("--hopper-arg", action="append", default=[], metavar="ARG")
    p.add_argument(
        "--summarize",
        type=Path,
        metavar="FILE",
        help="measure nothing: recompute and print the summary of a results file (rewritten)",
    )
    args = p.parse_args()
    if args.summarize:
        result = json.loads(args.summarize.read_text())
        runs = [{k: v for k, v in r.items() if k != "load1"} for r in result["samples"]]
        result["summary"] = summarize(runs)
        print_summary(result["summary"])
        args.summarize.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    atexit.register(S.stop_all)
    give_up = time.monotonic() + args.max_wait
    load_before = load1()
    info = S.machine_info()
    runs = []
    with tempfile.TemporaryDirectory(prefix="hopper-bench-loadgen-") as tmp:
        for i in range(args.runs):
            if args.wait_quiet is not None:
                # before every run: the previous run's own load has to fade too
                load = wait_quiet(args.wait_quiet, max(0.0, give_up - time.monotonic()))
                if load >= args.wait_quiet:
                    print(f"not quiet (load {load:.2f}): not measured", file=sys.stderr)
                    return 3
            start_load = load1()
            print(f"run {i + 1}/{args.runs} (load {start_load:.2f})", file=sys.stderr)
            samples = one_run(i, args, Path(tmp))
            samples["load1"] = {"start": start_load, "end": load1()}
            runs.append(samples)
    summary = summarize(runs)
    print_summary(summary)
    result = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "load1_before": load_before,
        "load1_per_run": [r["load1"] for r in runs],
        "load1_after": load1(),
        "runs": args.runs,
        "duration_s": args.duration,
        "connections": CONNS,
        "method": {
            "generators": "wrk 4.1 with bench/wrk/push.lua (-t1) and `hopper bench -s push "
            "--threads 1` (the Rust load generator), 64 keep-alive connections each, the same "
            "~90-byte push body, one after the other on the same server (order alternating "
            "by run)",
            "generator_cores": "CPU seconds of the generator process (all threads; for hopper "
            "bench the Python interpreter's start-up and report included) / wall seconds",
            "rate": "wrk: 2xx responses with ok:true per second; hopper bench: measured "
            "operations answered ok per second",
            "open_loop": "capacity = hopper bench's closed-loop c64 rate in the same run; "
            "corrected = from the intended send time on the fixed timetable, uncorrected = "
            "from the actual send",
        },
        "summary": summary,
        "samples": runs,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
