"""Producer throughput: one Python process pushing through `hopper.Producer` (batched
PUSHB commands pipelined on one WebSocket) to a local job server.

Starts `hopper serve` itself on a free 127.0.0.1 port with a fresh data directory (the
default durable configuration: write-ahead log, fsync interval) unless --url is given,
then for each of --runs runs pushes --jobs jobs (~90-byte payload) two ways and reports
the median jobs/s:

  push       `await producer.push(data)` per job (batched and pipelined by the producer)
  push_many  `await producer.push_many(list_of_jobs)` (batches of --batch-size)

Every run is bounded by --jobs and by --deadline seconds; all traffic goes to 127.0.0.1.

    .venv/bin/python bench/producer.py [--jobs 200000] [--runs 3] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import hopper
from hopper.server_process import ServerProcess

PAYLOAD = {
    "to": "user@example.com",
    "subject": "Welcome aboard!!!",
    "template": "welcome-v2-2026",
    "n": 1,
}


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """`hopper serve` with a scratch data directory (default fsync policy)."""
    with tempfile.TemporaryDirectory(prefix="hopper-bench-") as data:
        log = Path(data) / "server.log"
        with ServerProcess.hopper(["--data-dir", str(Path(data) / "data")], log=log) as server:
            yield server.url


async def one_run(url: str, args: argparse.Namespace, run: int) -> dict[str, float]:
    n = args.jobs
    rates: dict[str, float] = {}
    async with hopper.AsyncClient(url) as client:
        queue = f"bench-push-{run}"
        async with client.producer(
            queue, batch_size=args.batch_size, max_in_flight=args.in_flight
        ) as producer:
            t0 = time.perf_counter()
            for i in range(n):
                await producer.push(PAYLOAD)
                if i % 10_000 == 0 and time.perf_counter() - t0 > args.deadline:
                    n = i + 1
                    break
            await producer.flush()
            rates["push"] = producer.pushed / (time.perf_counter() - t0)
        queue = f"bench-many-{run}"
        jobs = [{"data": PAYLOAD} for _ in range(args.jobs)]
        async with client.producer(
            queue, batch_size=args.batch_size, max_in_flight=args.in_flight
        ) as producer:
            t0 = time.perf_counter()
            ids = await asyncio.wait_for(producer.push_many(jobs), args.deadline)
            rates["push_many"] = len(ids) / (time.perf_counter() - t0)
        health = await client.health()
        rates["waiting"] = health["queues"]["waiting"]
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an already running server (default: start one)")
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds per phase")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(local_server())
        samples: dict[str, list[float]] = {"push": [], "push_many": []}
        for run in range(args.runs):
            got = asyncio.run(one_run(url, args, run))
            for key in samples:
                samples[key].append(got[key])
            print(
                f"run {run + 1}: push {got['push']:,.0f} jobs/s, "
                f"push_many {got['push_many']:,.0f} jobs/s "
                f"(server reports {got['waiting']:,.0f} waiting)"
            )
    for key, values in samples.items():
        print(f"median {key}: {statistics.median(values):,.0f} jobs/s over {args.runs} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
