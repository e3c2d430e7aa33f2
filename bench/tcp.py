"""bunqueue TCP protocol benchmark: `hopper serve` side by side with the bunqueue server.

Each cell pushes or processes --jobs jobs (100,000; payload {i, to, subject}, ~50 bytes)
over bunqueue's binary TCP protocol, against a freshly started server, hopper and bunqueue
one after the other (never at once; who goes first alternates between runs), and reports
the median over --runs:

  addbulk      stock SDK: Queue.addBulk, 1,000 jobs per call, sequential
  add64        stock SDK: 64 concurrent awaited Queue.add calls (default autoBatch -> PUSHB)
  worker64     stock SDK: Worker, concurrency 64, trivial processor, on a prefilled queue
  raw_push     own client: 4 connections x 256 PUSH frames in flight
  raw_pullack  own client: 4 connections looping PULLB (count 100, owner, lockTtl) -> ACKB
               on a prefilled queue

Clients: bench/tcp_sdk_client.ts (bunqueue/client 2.9.5) and bench/tcp_raw_client.ts
(our framing + msgpackr), on Bun from bench/peers; for raw_pullack
bench/tcp_pullb_client.py, the compiled load generator behind `hopper bench` (a Bun
client decoding 100 job objects per PULLB used a whole core and was the limit). The CPU
of the client, of the server's
process tree and of the whole machine is sampled over the timed phase only (the client
waits for "go" before timing and for "bye" before closing), so a client near 1 core shows
that the client, not the server, is the limit.

    .venv/bin/python bench/tcp.py                                   # 3 runs, ~5 min
    .venv/bin/python bench/tcp.py --only bunqueue --runs 1 --jobs 20000   # smoke run
    .venv/bin/python bench/tcp.py --cells raw_push,raw_pullack --only hopper
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import server as S  # bench/server.py: CPU sampling, machine info, peer paths
from hopper.server_process import ServerProcess, ServerStartError, free_port

HERE = S.HERE
SERVERS = ("hopper", "bunqueue")
RATE_LIMIT = "2000000000"  # bunqueue's per-connection limit (10,000/min) would cap a cell

Sample = dict[str, Any]


@dataclass(frozen=True)
class Cell:
    key: str
    label: str
    client: str  # "sdk", "raw" (Bun) or "loadgen" (rust/loadgen)
    mode: str  # the client's first argument


CELLS = (
    Cell("addbulk", "SDK Queue.addBulk, 1000/call", "sdk", "addbulk"),
    Cell("add64", "SDK Queue.add, 64 concurrent (autoBatch)", "sdk", "add64"),
    Cell("worker64", "SDK Worker, concurrency 64", "sdk", "worker64"),
    Cell("raw_push", "raw PUSH, 4 conn x 256 in flight", "raw", "push"),
    Cell("raw_pullack", "raw PULLB(100)+ACKB, 4 conn", "loadgen", "pullb"),
)

_servers: list[ServerProcess] = []  # running now, stopped on exit / signal
_clients: list[subprocess.Popen[str]] = []


# --------------------------------------------------------------------------- servers


def start_server(name: str, scratch: Path, tag: str, hopper_args: list[str]) -> ServerProcess:
    """A fresh server on free loopback ports (HTTP for the health check, TCP for the
    load); raises ServerStartError if it does not answer /health within 30 s."""
    log = scratch / f"{name}-{tag}.log"
    if name == "hopper":
        data = [] if "--memory" in hopper_args else ["--data-dir", str(scratch / f"data-{tag}")]
        args = [*data, "--rate-limit-max-requests", RATE_LIMIT, *hopper_args]
        srv = ServerProcess.hopper(args, log=log)
    else:
        http_port, tcp_port = free_port(), free_port()
        env = dict(
            os.environ,
            HOST="127.0.0.1",
            HTTP_PORT=str(http_port),
            TCP_PORT=str(tcp_port),
            RATE_LIMIT_MAX_REQUESTS=RATE_LIMIT,
        )
        for k in ("DATA_PATH", "BUNQUEUE_DATA_PATH", "BQ_DATA_PATH", "AUTH_TOKENS"):
            env.pop(k, None)  # in-memory, no auth
        srv = ServerProcess(
            [str(S.BUN), str(S.BUNQUEUE_MAIN)],
            port=http_port,
            log=log,
            env=env,
            cwd=S.PEERS,
            label="bunqueue",
        )
        srv.tcp_port = tcp_port
    _servers.append(srv)
    srv.start(timeout=30)
    assert srv.tcp_port is not None
    if not wait_tcp(srv.tcp_port, time.monotonic() + 10):
        raise ServerStartError(f"{name}: /health is 200 but TCP port {srv.tcp_port} refuses")
    return srv


def wait_tcp(port: int, deadline: float) -> bool:
    """The TCP listener may bind after /health answers (or never, before it exists): poll
    a connect, so a missing listener fails the cell at once instead of at its timeout
    (the SDK would reconnect forever)."""
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        time.sleep(0.05)
    return False


def wait_idle(max_wait: float, below: float) -> float:
    """Waits (at most `max_wait` s) until the machine is busy less than `below` cores over
    1 s, since other work on a shared 2-core machine moves the numbers; returns the busy
    cores of the last second, which each sample records."""
    ncpu = os.cpu_count() or 1
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = S.machine_busy()
        time.sleep(1.0)
        b1, t1 = S.machine_busy()
        busy = float((b1 - b0) / max(1, t1 - t0) * ncpu)
        if busy < below or time.monotonic() >= deadline:
            return busy


def add_quiet_options(p: argparse.ArgumentParser, idle_wait: float, noisy_retries: int) -> None:
    """The options of `wait_idle` and of measuring a noisy sample again."""
    p.add_argument(
        "--idle-wait",
        type=float,
        default=idle_wait,
        help="before each sample, wait up to this many s for a quiet machine (0: don't)",
    )
    p.add_argument(
        "--idle-below", type=float, default=0.3, help="quiet = fewer busy cores than this"
    )
    p.add_argument(
        "--noisy-above",
        type=float,
        default=0.5,
        help="a sample whose other_cores (machine - generator - servers) exceeds this is noisy",
    )
    p.add_argument(
        "--noisy-retries",
        type=int,
        default=noisy_retries,
        help="measure a noisy sample again up to this many times (the last one is kept)",
    )


def quiet_method(args: argparse.Namespace) -> str:
    """How `add_quiet_options`' settings were applied, for a results file's method."""
    return (
        f"before each sample, up to {args.idle_wait:g} s of waiting for the machine to be "
        f"busy < {args.idle_below:g} cores over 1 s (busy_cores_before records the last "
        f"second); a sample whose other_cores exceeds {args.noisy_above:g} is measured "
        f"again from scratch, up to {args.noisy_retries} times; the last attempt is kept "
        "(noisy: true if it was still noisy) and the others are in discarded_noisy_samples"
    )


def stop_server(srv: ServerProcess, data_dir: Path) -> int | None:
    """SIGTERM (SIGKILL after 10 s); the data dir goes too, so the disk does not fill."""
    code = srv.stop(10.0)
    if srv in _servers:
        _servers.remove(srv)
    shutil.rmtree(data_dir, ignore_errors=True)
    return code


def stop_all() -> None:
    for c in list(_clients):
        kill_client(c)
    for srv in list(_servers):
        srv.stop(5.0)
        _servers.remove(srv)


def kill_client(p: subprocess.Popen[str]) -> None:
    """The client runs in its own session: SIGKILL to its group, then reap."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(10)
    if p in _clients:
        _clients.remove(p)


# --------------------------------------------------------------------------- one cell


def client_cmd(cell: Cell, port: int, args: argparse.Namespace) -> list[str]:
    # the client gives up 2 s before the driver does, so its partial counts get reported
    client_timeout = max(1.0, args.timeout - 2)
    common = ["--port", str(port), "--jobs", str(args.jobs), "--timeout", str(client_timeout)]
    if cell.client == "sdk":
        return [
            str(S.BUN),
            str(HERE / "tcp_sdk_client.ts"),
            cell.mode,
            *common,
            *["--bulk", str(args.bulk), "--lanes", str(args.lanes)],
            *["--concurrency", str(args.concurrency)],
        ]
    if cell.client == "loadgen":
        return [
            sys.executable,
            str(HERE / "tcp_pullb_client.py"),
            *common,
            *["--conns", str(args.raw_conns), "--count", str(args.pull_count)],
        ]
    return [
        str(S.BUN),
        str(HERE / "tcp_raw_client.ts"),
        cell.mode,
        *common,
        *["--conns", str(args.raw_conns), "--window", str(args.raw_window)],
    ]


class Lines:
    """The client's stdout as lines with a deadline (a reader thread; select() on a text
    pipe would miss lines already buffered by Python)."""

    def __init__(self, p: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert p.stdout is not None
        out = p.stdout

        def pump() -> None:
            for line in out:
                self.q.put(line.rstrip("\n"))
            self.q.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def expect(self, prefix: str, deadline: float) -> str:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {prefix} line before the cell's deadline")
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"client exited before {prefix}: {self.seen[-5:]}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line[len(prefix) :].strip()


def cpu_snapshot(client_pid: int, server_pid: int) -> tuple[float, float, float, float, float]:
    """(monotonic time, client CPU s, server tree CPU s, machine busy jiffies, total)."""
    busy, total = S.machine_busy()
    return (
        time.monotonic(),
        float(S.tree_cpu_s(client_pid)),
        float(S.tree_cpu_s(server_pid)),
        float(busy),
        float(total),
    )


def run_cell(cell: Cell, srv: ServerProcess, args: argparse.Namespace, errlog: Path) -> Sample:
    """Runs one client against `srv`: setup (untimed), then the timed phase between "go"
    and its RESULT line, with CPU sampled at both ends. Bounded by --timeout overall."""
    assert srv.tcp_port is not None
    cmd = client_cmd(cell, srv.tcp_port, args)
    deadline = time.monotonic() + args.timeout
    with errlog.open("a") as err:
        err.write(f"--- {shlex.join(cmd)}\n")
        err.flush()
        p = subprocess.Popen(
            cmd,
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    _clients.append(p)
    assert p.stdin is not None
    try:
        lines = Lines(p)
        lines.expect("READY", deadline)
        c0 = cpu_snapshot(p.pid, srv.pid)
        p.stdin.write("go\n")
        p.stdin.flush()
        raw = lines.expect("RESULT", deadline)
        c1 = cpu_snapshot(p.pid, srv.pid)
        with contextlib.suppress(BrokenPipeError):
            p.stdin.write("bye\n")
            p.stdin.flush()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(15)
        res: Sample = json.loads(raw)
    except (TimeoutError, RuntimeError, ValueError, OSError) as e:
        kill_client(p)
        tail = errlog.read_text(errors="replace")[-1500:]
        return {"error": f"{type(e).__name__}: {e}; client stderr: {tail}", "rate": None}
    finally:
        kill_client(p)
    wall = c1[0] - c0[0]
    ncpu = os.cpu_count() or 1
    res["wall_s"] = wall
    res["client_cores"] = (c1[1] - c0[1]) / wall
    res["server_cores"] = (c1[2] - c0[2]) / wall
    res["machine_busy_cores"] = (c1[3] - c0[3]) / max(1.0, c1[4] - c0[4]) * ncpu
    res["other_cores"] = res["machine_busy_cores"] - res["client_cores"] - res["server_cores"]
    if "client_self_cpu_s" in res and res.get("seconds"):
        res["client_self_cores"] = res["client_self_cpu_s"] / res["seconds"]
    problems = check(cell, res, args.jobs)
    if problems:
        res["error"] = "; ".join(problems)
        res["rate"] = None  # a cell that did not do all its work has no rate
    return res


def check(cell: Cell, res: Sample, jobs: int) -> list[str]:
    """What makes a sample invalid: errors, missing jobs, or a queue left in a wrong state."""
    out = []
    if res.get("error"):
        out.append(str(res["error"]))
    if res.get("bad"):
        out.append(f"{res['bad']} failed requests, e.g. {res.get('sample_error', '')[:300]}")
    if res.get("ok") != jobs:
        out.append(f"{res.get('ok')} of {jobs} jobs done")
    if res.get("closed_sockets"):
        out.append(f"{res['closed_sockets']} sockets closed by the server")
    if res.get("counts_error"):  # the server lacks GetJobCounts: no state check
        res["warning"] = f"queue state not checked: {res['counts_error']}"
        return out
    counts = res.get("counts_after")
    # addbulk / add64 also hold the warm-up job
    want = {"addbulk": jobs + 1, "add64": jobs + 1, "raw_push": jobs}.get(cell.key)
    if want is not None and isinstance(counts, dict) and counts.get("waiting") != want:
        out.append(f"waiting after = {counts.get('waiting')}, expected {want}")
    if cell.key in ("worker64", "raw_pullack") and isinstance(counts, dict):
        left = {k: counts.get(k) for k in ("waiting", "active")}
        if any(v != 0 for v in left.values()):
            out.append(f"left in the queue after: {left}")
    return out


# --------------------------------------------------------------------------- report

FIELDS = (
    "rate",
    "seconds",
    "client_cores",
    "client_self_cores",
    "server_cores",
    "machine_busy_cores",
    "other_cores",
    "p50_us",
    "p99_us",
)


def medians(samples: list[Sample]) -> Sample:
    good = [s for s in samples if s.get("rate") is not None]
    out: Sample = {"ok_runs": len(good), "failed_runs": len(samples) - len(good)}
    for f in FIELDS:
        vals = [float(s[f]) for s in good if s.get(f) is not None]
        out[f] = statistics.median(vals) if vals else None
    return out


def fmt(x: float | None, spec: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def report(cells: list[Cell], med: dict[str, dict[str, Sample]], args: argparse.Namespace) -> None:
    print(
        f"\nbunqueue TCP protocol, {args.jobs:,} jobs per cell, median of {args.runs} run(s); "
        "jobs/s (seconds); cores = CPU s / wall s over the timed phase\n"
    )
    print("| cell | hopper jobs/s | bunqueue jobs/s | hopper / bunqueue |")
    print("|---|---:|---:|---:|")
    for c in cells:
        h, b = med[c.key]["hopper"], med[c.key]["bunqueue"]
        ratio = h["rate"] / b["rate"] if h["rate"] and b["rate"] else None
        cols = [
            f"{fmt(m['rate'])} ({fmt(m['seconds'], '.2f')} s)"
            + (f", {m['failed_runs']} failed" if m["failed_runs"] else "")
            for m in (h, b)
        ]
        print(f"| {c.label} | {cols[0]} | {cols[1]} | {fmt(ratio, '.2f')} |")
    print("\n| cell | client cores h / b | server cores h / b | rest of machine h / b |")
    print("|---|---:|---:|---:|")
    for c in cells:
        h, b = med[c.key]["hopper"], med[c.key]["bunqueue"]
        row = [
            f"{fmt(h[f], '.2f')} / {fmt(b[f], '.2f')}"
            for f in ("client_cores", "server_cores", "other_cores")
        ]
        print(f"| {c.label} | {' | '.join(row)} |")


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=100_000, help="jobs per cell")
    p.add_argument("--cells", default=",".join(c.key for c in CELLS), help="comma list")
    p.add_argument("--only", choices=SERVERS, help="measure one server only")
    p.add_argument("--timeout", type=float, default=120.0, help="hard limit per cell (s)")
    p.add_argument("--bulk", type=int, default=1000, help="addbulk: jobs per addBulk call")
    p.add_argument("--lanes", type=int, default=64, help="add64: concurrent add() lanes")
    p.add_argument("--concurrency", type=int, default=64, help="worker64: Worker concurrency")
    p.add_argument("--raw-conns", type=int, default=4, help="raw cells: connections")
    p.add_argument("--raw-window", type=int, default=256, help="raw_push: frames in flight/conn")
    p.add_argument("--pull-count", type=int, default=100, help="raw_pullack: PULLB count")
    p.add_argument(
        "--hopper-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="appended to `hopper serve` (repeatable; --hopper-arg=--memory drops --data-dir)",
    )
    add_quiet_options(p, idle_wait=30.0, noisy_retries=2)
    p.add_argument("--out", type=Path, default=HERE / "results" / "tcp.json")
    args = p.parse_args()
    by_key = {c.key: c for c in CELLS}
    unknown = [k for k in args.cells.split(",") if k and k not in by_key]
    if unknown:
        p.error(f"unknown cells {unknown}; known: {', '.join(by_key)}")
    cells = [by_key[k] for k in args.cells.split(",") if k]
    servers = (args.only,) if args.only else SERVERS
    if not S.BUN.exists():
        subprocess.run(["npm", "ci", "--silent"], cwd=S.PEERS, check=True)

    def on_signal(signum: int, _frame: object) -> None:
        # clean up and leave at once: a raised SystemExit could land inside cleanup code
        stop_all()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(stop_all)

    info: Sample = S.machine_info()
    with contextlib.suppress(OSError, ValueError):
        mp = S.PEERS / "node_modules" / "msgpackr" / "package.json"
        info["msgpackr"] = json.loads(mp.read_text())["version"]
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hopper-bench-tcp-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    samples: dict[str, dict[str, list[Sample]]] = {c.key: {s: [] for s in SERVERS} for c in cells}
    discarded: dict[str, dict[str, list[Sample]]] = {c.key: {s: [] for s in SERVERS} for c in cells}
    started = time.time()
    try:
        for run in range(args.runs):
            # alternate who goes first so caches / thermal drift do not favour one side
            order = servers if run % 2 == 0 else servers[::-1]
            for cell in cells:
                for name in order:
                    for attempt in range(1, args.noisy_retries + 2):
                        tag = f"run{run + 1}-{cell.key}-{attempt}"
                        res = measure(name, cell, scratch, tag, args)
                        res["run"], res["attempt"] = run + 1, attempt
                        other = res.get("other_cores")
                        noisy = other is not None and other > args.noisy_above
                        last = attempt > args.noisy_retries
                        print_sample(res, cell, name, args.runs, noisy and not last)
                        if not noisy or last:
                            res["noisy"] = noisy
                            samples[cell.key][name].append(res)
                            break
                        discarded[cell.key][name].append(res)
    finally:
        stop_all()

    med = {c.key: {s: medians(samples[c.key][s]) for s in SERVERS} for c in cells}
    for c in cells:
        h, b = med[c.key]["hopper"]["rate"], med[c.key]["bunqueue"]["rate"]
        med[c.key]["ratio_hopper_over_bunqueue"] = {"rate": h / b if h and b else None}
    report(cells, med, args)
    write_json(args, cells, samples, discarded, med, info, scratch, started)
    return 0


def print_sample(res: Sample, cell: Cell, name: str, runs: int, retry: bool) -> None:
    print(
        f"run {res['run']}/{runs} {cell.key:<12} {name:<8} "
        f"{fmt(res.get('rate')):>9} jobs/s  {fmt(res.get('seconds'), '.3f')} s  "
        f"client {fmt(res.get('client_cores'), '.2f')} "
        f"server {fmt(res.get('server_cores'), '.2f')} "
        f"other {fmt(res.get('other_cores'), '.2f')} cores"
        + ("  (other work on the machine: measuring again)" if retry else "")
        + (f"  FAILED {str(res['error'])[:300]}" if res.get("error") else ""),
        file=sys.stderr,
        flush=True,
    )


def measure(name: str, cell: Cell, scratch: Path, tag: str, args: argparse.Namespace) -> Sample:
    """One sample: a fresh server, one client run, the server stopped (and its exit code
    kept: a server that crashed under load makes the sample fail)."""
    busy_before = wait_idle(args.idle_wait, args.idle_below) if args.idle_wait > 0 else None
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    try:
        srv = start_server(name, scratch, tag, args.hopper_arg)
    except ServerStartError as e:
        return {"error": f"server did not start: {str(e)[-1500:]}", "rate": None}
    try:
        res = run_cell(cell, srv, args, scratch / f"client-{name}-{tag}.log")
        if not srv.running:
            res["error"] = (str(res.get("error", "")) + " server exited during the cell").strip()
            res["rate"] = None
    finally:
        res_code = stop_server(srv, scratch / f"data-{tag}")
    res["server_exit"] = res_code
    res["busy_cores_before"] = busy_before
    res["loadavg_before"] = loadavg
    res["server_cmd"] = shlex.join(srv.command)
    return res


def write_json(
    args: argparse.Namespace,
    cells: list[Cell],
    samples: dict[str, dict[str, list[Sample]]],
    discarded: dict[str, dict[str, list[Sample]]],
    med: dict[str, dict[str, Sample]],
    info: Sample,
    scratch: Path,
    started: float,
) -> None:
    hopper_cmd = [
        *[sys.executable, "-m", "hopper", "serve", "--host", "127.0.0.1"],
        *["--port", "<free>", "--tcp-port", "<free>"],
        *([] if "--memory" in args.hopper_arg else ["--data-dir", "<fresh tmp dir>"]),
        *["--rate-limit-max-requests", RATE_LIMIT, *args.hopper_arg],
    ]
    body = {
        "method": {
            "runs": args.runs,
            "jobs": args.jobs,
            "only": args.only,
            "statistic": "median over the runs that succeeded, of each field separately",
            "order": "per cell, hopper then bunqueue on odd runs, bunqueue first on even runs",
            "restart": "a fresh server for every cell of every run; one server at a time",
            "servers": {
                "hopper": shlex.join(hopper_cmd),
                "bunqueue": "HOST=127.0.0.1 TCP_PORT=<free> HTTP_PORT=<free> "
                f"RATE_LIMIT_MAX_REQUESTS={RATE_LIMIT} bun bunqueue/dist/main.js (in-memory)",
            },
            "payload": '{i, to:"user@example.com", subject:"hello"} (~50 bytes)',
            "cells": {
                "addbulk": f"stock SDK, sequential Queue.addBulk of {args.bulk} jobs, after one "
                "warm-up add() that opens the pool",
                "add64": f"stock SDK, {args.lanes} lanes of awaited Queue.add (default "
                "autoBatch: maxSize 50, maxDelayMs 5 -> PUSHB), after one warm-up add()",
                "worker64": f"stock SDK Worker, concurrency {args.concurrency}, processor "
                "returns job.data.i; queue prefilled untimed via addBulk; timed from "
                "new Worker() to the last 'completed' event",
                "raw_push": f"bench/tcp_raw_client.ts, {args.raw_conns} connections x "
                f"{args.raw_window} PUSH frames in flight; p50/p99 = PUSH sent -> reply, "
                "including the wait inside the window",
                "raw_pullack": "bench/tcp_pullb_client.py (rust/loadgen, the generator of "
                "`hopper bench -t tcp -s pullb`, 1 thread), queue prefilled untimed (PUSHB x "
                f"1000, its standard ~90-byte payload), then {args.raw_conns} connections x 1 "
                f"loop of PULLB{{count:{args.pull_count}, owner, lockTtl:30000, timeout:0}} -> "
                f"ACKB{{ids, tokens}} until jobs / {args.pull_count} batches are done; p50/p99 "
                "= PULLB sent -> its ACKB answered",
            },
            "rate": "jobs done (ok replies / acked / completed) / seconds of the timed phase, "
            "measured in the client; a sample with any failed request, missing job, closed "
            "socket or wrong queue state afterwards is failed (rate null)",
            "cpu": "client_cores: /proc/<client pid>/stat utime+stime over the timed phase "
            "(driver-side wall between 'go' and the RESULT line); client_self_cores: the "
            "client's process.cpuUsage() over its own timer; server_cores: /proc utime+stime "
            "of the server's process tree; machine_busy_cores from /proc/stat; other_cores = "
            "machine - client - server (loopback softirq and anything else running)",
            "timeout_s": args.timeout,
            "idle": quiet_method(args),
        },
        "server_logs": str(scratch),
        "cells": {c.key: {"label": c.label, "client": c.client, "mode": c.mode} for c in cells},
        "samples": samples,
        "discarded_noisy_samples": discarded,
        "median": med,
    }
    S.write_results(args.out, started, info, body)


if __name__ == "__main__":
    sys.exit(main())
