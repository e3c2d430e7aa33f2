"""Raw PULLB/ACKB load client for bench/tcp.py's raw_pullack cell: the compiled load
generator behind `hopper bench` (rust/loadgen, scenario pullb), so that the client, a Bun
script before, is not what limits the cell.

    .venv/bin/python bench/tcp_pullb_client.py --port P [--jobs 100000] [--conns 4]
        [--count 100] [--host 127.0.0.1] [--queue q] [--timeout 120]

The queue is first filled with --jobs jobs (PUSHB x 1000, 4 in flight, untimed); then
--conns connections each loop PULLB{count, owner, lockTtl:30000, timeout:0} -> ACKB{ids,
tokens} until the --jobs / --count batches are done -> jobs/s = acked jobs / seconds
(from all connections open to the last ACKB answered). One generator thread drives the
connections, as one Bun process did.

Handshake with the driver, as bench/tcp_raw_client.ts: READY once filled, timing starts
at "go", then "RESULT {json}", and the process ends at "bye" (or when stdin ends).
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import struct
import sys
import time
from typing import Any

import msgpack
from hopper._engine import LoadGen
from hopper.bench import histograms

PREFILL_BATCH = 1000
PREFILL_WINDOW = 4


def generate(config: dict[str, Any]) -> dict[str, Any]:
    """One run of the generator, to its end; its report."""
    gen = LoadGen(json.dumps(config))
    while not gen.finished():
        time.sleep(0.005)
    report: dict[str, Any] = json.loads(gen.join())
    return report


def call(host: str, port: int, cmd: dict[str, Any], timeout: float) -> Any:
    """One request on its own connection (the counts after the run)."""
    body = msgpack.packb({**cmd, "reqId": "1"})
    with socket.create_connection((host, port), timeout) as s:
        s.sendall(struct.pack(">I", len(body)) + body)
        buf = b""
        while True:
            if len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]
                reply = msgpack.unpackb(buf[4 : 4 + n])
                if reply.get("type") != "event":
                    return reply
                buf = buf[4 + n :]
                continue
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed before the reply")
            buf += chunk


def cpu_s() -> float:
    """This process's CPU time (all threads: the generator's included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--count", type=int, default=100, help="jobs per PULLB")
    p.add_argument("--queue", default=f"bench-raw-pullb-{int(time.time() * 1000)}")
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args()
    if args.jobs % PREFILL_BATCH or args.jobs % args.count:
        p.error(f"--jobs must be a multiple of {PREFILL_BATCH} and of --count")
    base = {
        "transport": "tcp",
        "host": args.host,
        "port": args.port,
        "queues": [args.queue],
        "warmup_s": 0.0,
        "timeout_s": args.timeout,
    }
    pre = generate(
        {
            **base,
            "scenario": "bulk",
            "batch": PREFILL_BATCH,
            "count": args.jobs // PREFILL_BATCH,
            "connections": 1,
            "window": PREFILL_WINDOW,
        }
    )
    filled = pre["series"][0]
    if filled["jobs"] != args.jobs:
        raise SystemExit(f"prefill PUSHB failed: {filled['error_sample'] or filled}")
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            break
    cpu0 = cpu_s()
    report = generate(
        {
            **base,
            "scenario": "pullb",
            "batch": args.count,
            "count": args.jobs // args.count,
            "prefill": 0,  # filled above, untimed
            "connections": args.conns,
            "window": 1,  # one PULLB -> ACKB loop per connection
            "threads": 1,
        }
    )
    self_cpu = cpu_s() - cpu0
    s = report["series"][0]
    seconds = s["elapsed_s"]
    hist = histograms.decode(s["hist"])
    counts = call(args.host, args.port, {"cmd": "GetJobCounts", "queue": args.queue}, 10.0)
    lost = [n for n in report["notes"] if "ended early" in n or "stopped early" in n]
    result = {
        "mode": "pullb",
        "client": "rust/loadgen (hopper bench -s pullb), 1 thread",
        "jobs": args.jobs,
        "conns": args.conns,
        "count": args.count,
        "loops": 1,
        "lock_ttl": 30000,
        "seconds": seconds,
        "rate": s["jobs"] / seconds if seconds > 0 else None,
        "client_self_cpu_s": self_cpu,
        "generator_cpu_s": report["cpu_s"],
        "generator_wall_s": report["wall_s"],
        "p50_us": hist.get_value_at_percentile(50),
        "p99_us": hist.get_value_at_percentile(99),
        "latency": "per batch: PULLB sent -> its ACKB answered",
        "pullb_frames": s["ok"] + s["errors"] + s["empty"],
        "ackb_frames": s["ok"],
        "empty_pulls": s["empty"],
        "ok": s["jobs"],
        "bad": s["errors"],
        "sample_error": s["error_sample"] or "",
        "notes": report["notes"],
        **({"error": "; ".join(lost)} if lost else {}),
        **({} if counts.get("ok") is True else {"counts_error": json.dumps(counts)[:300]}),
        "counts_after": counts.get("counts") if counts.get("ok") is True else None,
    }
    print("RESULT " + json.dumps(result), flush=True)
    for line in sys.stdin:
        if line.strip() == "bye":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
