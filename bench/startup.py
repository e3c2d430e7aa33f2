"""Start-up time of a `hopper` command: from exec to the first 200 from `/health`,
with a scrubbed environment (PATH=/usr/bin:/bin) and a fresh data directory each run.

    python bench/startup.py dist/hopper --runs 5 [--out bench/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from hopper.server_process import ServerProcess

DEADLINE_S = 60.0


def one_start(command: str) -> float:
    """Seconds from exec to the first 200 from /health (polled every 5 ms)."""
    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess.hopper(
            ["--data-dir", str(Path(data) / "data")],
            executable=command,
            log=Path(data) / "server.log",
        )
        try:
            return server.start(DEADLINE_S)
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    command = str(args.command.resolve())
    samples = [one_start(command) for _ in range(args.runs)]
    result = {
        "command": " ".join(sys.argv),
        "executable": command,
        "bytes": os.path.getsize(command),
        "startup_s": samples,
        "median_s": statistics.median(samples),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
