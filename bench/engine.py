"""In-process engine benchmark, side by side with bunqueue's embedded library.

Measures single pushes/s, batched pushes/s (batches of 1000), pull+ack pairs/s, and
resident bytes per waiting job (1,000,000 jobs with a 90-byte payload, each size in a
fresh process). Each rate is the median of --runs runs. The peer (bench/peers, Bun +
bunqueue from npm) runs in the same invocation, so ratios compare like with like.

    python bench/engine.py [--runs 5] [--ops 200000] [--jobs 1000000] [--no-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PAYLOAD = {
    "to": "user@example.com",
    "subject": "Welcome aboard!!!",
    "template": "welcome-v2-2026",
    "n": 1,
}
PEERS = Path(__file__).parent / "peers"


def payload_bytes() -> int:
    import orjson

    return len(orjson.dumps(PAYLOAD))


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t0)


def single_push(n: int) -> float:
    import hopper

    with hopper.Engine() as e:
        push = e.push
        return rate(lambda k: [push("bench", PAYLOAD) for _ in range(k)], n)


def batch_push(n: int) -> float:
    import hopper

    with hopper.Engine() as e:
        batch = [{"data": PAYLOAD}] * 1000

        def run(k: int) -> None:
            for _ in range(k // 1000):
                e.push_many("bench", batch)

        return rate(run, n)


def pull_ack(n: int) -> float:
    import hopper

    with hopper.Engine() as e:
        batch = [{"data": PAYLOAD}] * 1000
        for _ in range(n // 1000):
            e.push_many("bench", batch)
        pull, ack = e.pull, e.ack

        def run(k: int) -> None:
            for _ in range(k):
                job = pull("bench")
                assert job is not None
                ack(job.id, job.token)

        return rate(run, n)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bytes_per_job(n: int) -> float:
    """Run in a fresh process: RSS growth per waiting job."""
    import gc

    import hopper

    e = hopper.Engine()
    batch = [{"data": PAYLOAD}] * 1000
    gc.collect()
    before = rss_bytes()
    for _ in range(n // 1000):
        e.push_many("bench", batch)
    gc.collect()
    after = rss_bytes()
    assert e.counts("bench")["waiting"] == n
    return (after - before) / n


def run_peer(ops: int, jobs: int) -> dict[str, float] | None:
    bun = PEERS / "node_modules" / ".bin" / "bun"
    if not bun.exists():
        npm = shutil.which("npm")
        if npm is None or not (PEERS / "package.json").exists():
            return None
        subprocess.run([npm, "ci", "--silent"], cwd=PEERS, check=True)
    env = dict(
        os.environ,
        PEER_SINGLE=str(ops),
        PEER_BATCH=str(ops * 5),
        PEER_PULLACK=str(ops),
        PEER_JOBS=str(jobs),
    )
    out = subprocess.run(
        [str(bun), "bunqueue_embedded.ts"],
        cwd=PEERS,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--ops", type=int, default=200_000)
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--child-bytes", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "engine.json")
    args = p.parse_args()

    if args.child_bytes:
        print(bytes_per_job(args.child_bytes))
        return 0

    import hopper

    results: dict[str, dict[str, float]] = {"hopper": {}, "bunqueue": {}}
    samples: dict[str, list[float]] = {
        "single_push_per_s": [],
        "batch_push_per_s": [],
        "pull_ack_per_s": [],
        "bytes_per_waiting_job": [],
    }
    peer_samples: dict[str, list[float]] = {k: [] for k in samples}
    for i in range(args.runs):
        samples["single_push_per_s"].append(single_push(args.ops))
        samples["batch_push_per_s"].append(batch_push(args.ops * 5))
        samples["pull_ack_per_s"].append(pull_ack(args.ops))
        child = subprocess.run(
            [sys.executable, __file__, "--child-bytes", str(args.jobs)],
            check=True,
            capture_output=True,
            text=True,
        )
        samples["bytes_per_waiting_job"].append(float(child.stdout.strip()))
        if not args.no_peer:
            peer = run_peer(args.ops, args.jobs)
            if peer is not None:
                for k in peer_samples:
                    peer_samples[k].append(float(peer[k]))
        print(f"run {i + 1}/{args.runs} done", file=sys.stderr)

    for k in samples:
        results["hopper"][k] = statistics.median(samples[k])
        if peer_samples[k]:
            results["bunqueue"][k] = statistics.median(peer_samples[k])

    rows = [
        ("single push /s", "single_push_per_s", True),
        ("batched push /s (1000/batch)", "batch_push_per_s", True),
        ("pull+ack /s", "pull_ack_per_s", True),
        (
            f"resident bytes / waiting job ({payload_bytes()} B payload)",
            "bytes_per_waiting_job",
            False,
        ),
    ]
    print(
        f"\nmedian of {args.runs} runs; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, hopper {hopper.__version__}"
    )
    print("| metric | hopper | bunqueue (embedded) | hopper / bunqueue |")
    print("|---|---:|---:|---:|")
    for label, key, higher_better in rows:
        h = results["hopper"][key]
        b = results["bunqueue"].get(key)
        ratio = "n/a" if not b else (f"{h / b:.2f}x" if higher_better else f"{b / h:.2f}x smaller")
        print(f"| {label} | {h:,.0f} | {'n/a' if b is None else f'{b:,.0f}'} | {ratio} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "runs": args.runs,
                "ops": args.ops,
                "jobs": args.jobs,
                "samples": {"hopper": samples, "bunqueue": peer_samples},
                "median": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
