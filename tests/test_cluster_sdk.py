"""The stock bunqueue 2.9.5 SDK (Queue, Worker) against a three-broker cluster: jobs added
through one broker and processed through another all complete although the slot's owner
is SIGKILLed midway; the SDK reconnects through the fronts and never notices the cluster
(sdk/failover.ts)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from cluster_brokers import owner, three_brokers, wait_owner
from postgres_server import start_for_test, stop

REPO = Path(__file__).resolve().parents[1]
BUN = REPO / "bench/peers/node_modules/.bin/bun"
SCRIPT = REPO / "tests/server/sdk/failover.ts"
JOBS, KILL_AT = 400, 100


def test_a_worker_through_the_cluster_outlives_the_owner(tmp_path: Path) -> None:
    assert BUN.exists(), "bun and bunqueue are not installed (make install: npm ci in bench/peers)"
    pg = start_for_test()
    ns = "sdk"
    script = None
    try:
        with three_brokers(pg, tmp_path, ns, stall_ms=2000) as brokers:
            assert owner(pg, ns) == "a"
            script = run_failover_script(brokers[1].tcp_port, brokers[2].tcp_port)
            lines = []
            assert script.stdout is not None
            for line in script.stdout:
                lines.append(line)
                if line.strip() == "KILL":
                    killed = time.monotonic()
                    brokers[0].kill()
                    assert wait_owner(pg, ns, not_="a") in ("b", "c")
                    print(f"new owner after {time.monotonic() - killed:.2f} s")
                if line.startswith("RESULT "):
                    break
            script.wait(30)
        results = [x for x in lines if x.startswith("RESULT ")]
        assert script.returncode == 0 and results, "".join(lines) + script.stderr.read()
        result = json.loads(results[0].removeprefix("RESULT "))
        print({k: v for k, v in result.items() if k in ("runs", "errors", "completed")})
        assert "KILL\n" in lines, "the kill never happened"
        assert sorted(result["completedIds"]) == sorted(result["added"])
        assert result["runs"] >= JOBS
    finally:
        if script is not None and script.poll() is None:
            script.kill()
        stop(pg)


def run_failover_script(add_port: int | None, work_port: int | None) -> subprocess.Popen[str]:
    """sdk/failover.ts: adds through `add_port`, works through `work_port`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BQ_", "BUNQUEUE_"))}
    env |= {"BQ_HOST": "127.0.0.1", "BQ_PORT": str(add_port), "BQ_QUEUE": "sdk"}
    cmd = [str(BUN), "--no-install", str(SCRIPT), str(JOBS), str(KILL_AT), str(work_port)]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
