"""The crash test's killer: a single-threaded client in its own process, so nothing
stands between an answer reaching it and the SIGKILL it sends.

    python crash_killer.py HOST PORT PGID ARM_AFTER_S PROBE_DELAY_US

Pulls and acks jobs of the queue `crash` over one keep-alive connection and prints the
id of every job whose ack was answered 200. Once ARM_AFTER_S seconds have passed, it
sends a durable push on a second connection without waiting for it, PROBE_DELAY_US
microseconds later the next ack, and kills the process group PGID as soon as that ack
is answered 200: the ack then reaches the log while the writer is busy syncing the
push, which is when an answer given before the record's `write` would be lost. Exits
after MAX_REQUESTS requests or DEADLINE_S seconds whatever happens (the test then
kills the server itself).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sys
import time

MAX_REQUESTS = 20_000
DEADLINE_S = 10.0
JSON = {"content-type": "application/json"}
DURABLE_PUSH = json.dumps({"data": {"probe": True}, "durable": True, "maxAttempts": 1})


def main() -> None:
    host, port, pgid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    arm_after, probe_delay = float(sys.argv[4]), float(sys.argv[5]) / 1e6
    conn = http.client.HTTPConnection(host, port, timeout=5)
    pusher = http.client.HTTPConnection(host, port, timeout=5)
    start = time.monotonic()
    for _ in range(MAX_REQUESTS):
        if time.monotonic() - start > DEADLINE_S:
            return
        conn.request("GET", "/queues/crash/jobs")
        pulled = json.loads(conn.getresponse().read())
        job = pulled.get("job")
        if job is None:
            continue
        armed = time.monotonic() - start >= arm_after
        if armed:
            pusher.request("POST", "/queues/crash/jobs", DURABLE_PUSH, JSON)
            until = time.perf_counter() + probe_delay
            while time.perf_counter() < until:
                pass
        body = json.dumps({"token": pulled["token"]})
        conn.request("POST", f"/jobs/{job['id']}/ack", body, JSON)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            continue
        if armed:
            os.killpg(pgid, signal.SIGKILL)
        print(job["id"], flush=True)
        if armed:
            return


if __name__ == "__main__":
    # The server gone mid-request: nothing more was answered.
    with contextlib.suppress(OSError, http.client.HTTPException):
        main()
