"""`hopper soak --start --postgres-url`: the soak suite against three brokers of a
cluster, its SIGKILL fault killing whichever broker owns the slot: every invariant holds
through the owner kills, under `--fsync always` (nothing answered may be lost)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hopper.soak.config import FAULT_KINDS
from postgres_server import start_for_test, stop

RUN_S = 20


def test_a_cluster_soak_with_owner_kills_passes(tmp_path: Path) -> None:
    pg = start_for_test()
    try:
        out = tmp_path / "soak.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOPPER_")}
        cmd = [sys.executable, "-m", "hopper", "soak", "--start", "--postgres-url", pg.url]
        cmd += ["--fsync", "always", "--duration", f"{RUN_S}s", "--json", str(out), "--quiet"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_S + 90)
    finally:
        stop(pg)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["result"] == "PASS"
    assert report["cluster"].startswith("cluster of 3 brokers"), report["cluster"]
    for kind in FAULT_KINDS:
        assert report["faults"][kind] >= 1, report["faults"]
    for invariant in (
        "no-lost-push",
        "no-double-completion",
        "state-consistent",
        "stalled-jobs-return",
        "dropped-connection-releases",
    ):
        assert report["checks"].get(invariant, 0) >= 1, (invariant, report["checks"])
