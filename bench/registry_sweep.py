"""How the id registry (`hopper_ids`) follows the jobs in a real cluster: its rows of
removed jobs are swept by their slots' owners, at their default timing (rows untouched
for 10 minutes, a pass every minute; `rust/cluster/src/registry_sweep.rs`).

One PostgreSQL (tests/postgres_server.py) and two brokers (`hopper serve`, 2 slots,
`--fsync always`) on 127.0.0.1. Once the slots have settled on their ranked brokers,
--pushes jobs with caller-chosen ids (`order-<n>`) are pushed over HTTP to 7 queues of
both slots, through both brokers in turn, and the first --removed of them are removed
(`DELETE /jobs/:id`) through the other broker. Then the registry's row count is read
every --every s for --watch s. Reported: the count after the pushes, each reading, the
first reading at which only the live ids' rows are left, and whether a removed id and a
live one answer 404 and 200 through a broker at the end. Takes about 12 minutes.

    .venv/bin/python bench/registry_sweep.py [--pushes 300] [--removed 200]
        [--watch 780] [--every 30] [--out bench/results/registry_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server as S  # bench/server.py: machine info

sys.path.insert(0, str(S.ROOT / "tests"))
import postgres_server as PG
from cluster_brokers import broker, psql, slot_owners, wait_settled

HERE = Path(__file__).resolve().parent
NAMESPACE = "sweep"
SLOTS = 2
# Every wait for the brokers' slots is bounded by this.
SETTLE_S = 60.0


def rows(pg: PG.Postgres, where: str = "") -> int:
    sql = f"SELECT count(*) FROM hopper_ids WHERE namespace = '{NAMESPACE}' {where}"
    return int(psql(pg, sql)[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pushes", type=int, default=300)
    ap.add_argument("--removed", type=int, default=200)
    ap.add_argument("--watch", type=float, default=780.0, help="seconds to read the rows for")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between readings")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "registry_sweep.json")
    args = ap.parse_args()
    if not 0 <= args.removed <= args.pushes:
        ap.error("--removed must be between 0 and --pushes")
    pg = PG.start()
    logs = Path(tempfile.mkdtemp(prefix="hopper-sweep-"))
    brokers = [broker(pg, name, logs, NAMESPACE, slots=SLOTS) for name in "ab"]
    try:
        for b in brokers:
            b.start()
        # Settled: a slot moving to its ranked broker cuts the requests in flight to it.
        wait_settled(lambda: slot_owners(pg, NAMESPACE), ["a", "b"], SLOTS, SETTLE_S)
        for i in range(args.pushes):
            got = httpx.post(
                f"{brokers[i % 2].url}/queues/q{i % 7}/jobs",
                json={"data": i, "jobId": f"order-{i}"},
            )
            got.raise_for_status()
        for i in range(args.removed):
            httpx.delete(f"{brokers[(i + 1) % 2].url}/jobs/order-{i}").raise_for_status()
        pushed_at = time.monotonic()
        after_pushes = rows(pg)
        print(f"rows after the pushes and removals: {after_pushes}", flush=True)
        readings: list[tuple[float, int]] = []
        while time.monotonic() - pushed_at < args.watch:
            time.sleep(args.every)
            readings.append((round(time.monotonic() - pushed_at), rows(pg)))
            print(f"{readings[-1][0]:>5} s: {readings[-1][1]} rows", flush=True)
        live = args.pushes - args.removed
        swept_by = next((t for t, n in readings if n == live), None)
        answers = {}
        if args.removed:
            answers["removed"] = httpx.get(f"{brokers[0].url}/jobs/order-0").status_code
        if live:
            answers["live"] = httpx.get(f"{brokers[0].url}/jobs/order-{args.removed}").status_code
        report = {
            "command": " ".join(["bench/registry_sweep.py", *sys.argv[1:]]),
            "machine": S.machine_info(),
            "pushes": args.pushes,
            "removed": args.removed,
            "rows_after_pushes": after_pushes,
            "readings_s_rows": readings,
            "only_live_rows_by_s": swept_by,
            "live_rows_at_end": rows(pg, f"AND substr(job_id, 7)::int >= {args.removed}"),
            "status_codes_at_end": answers,
        }
        print(json.dumps({k: v for k, v in report.items() if k != "machine"}), flush=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        for b in brokers:
            b.kill()
        PG.stop(pg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
