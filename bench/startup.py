"""Start-up time of a `hopper` command: from exec to the first 200 from `/health`,
with a scrubbed environment (PATH=/usr/bin:/bin) and a fresh data directory each run.

    python bench/startup.py dist/hopper --runs 5 [--out bench/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DEADLINE_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def one_start(command: str) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        args = [command, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data]
        started = time.perf_counter()
        proc = subprocess.Popen(
            args,
            env={"PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not healthy(f"http://127.0.0.1:{port}/health"):
                if proc.poll() is not None or time.perf_counter() - started > DEADLINE_S:
                    raise RuntimeError(f"{command} did not become healthy")
                time.sleep(0.01)
            return time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)


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
