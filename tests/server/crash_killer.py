"""The crash test's killer: a single-threaded client in its own process, so nothing
stands between an answer reaching it and the SIGKILL it sends.

    python crash_killer.py HOST PORT PGID ARM_AFTER_S

Pulls and acks jobs of the queue `crash` over one keep-alive connection; once
ARM_AFTER_S seconds have passed, it prints the id of the next job whose ack was answered
200 and kills the process group PGID at once. Exits after MAX_REQUESTS requests or
DEADLINE_S seconds whatever happens (the test then kills the server itself).
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


def main() -> None:
    host, port, pgid, arm_after = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    conn = http.client.HTTPConnection(host, port, timeout=5)
    start = time.monotonic()
    for _ in range(MAX_REQUESTS):
        if time.monotonic() - start > DEADLINE_S:
            return
        conn.request("GET", "/queues/crash/jobs")
        pulled = json.loads(conn.getresponse().read())
        job = pulled.get("job")
        if job is None:
            continue
        body = json.dumps({"token": pulled["token"]})
        conn.request("POST", f"/jobs/{job['id']}/ack", body, {"content-type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        if answer.status == 200 and time.monotonic() - start >= arm_after:
            os.killpg(pgid, signal.SIGKILL)
            print(job["id"], flush=True)
            return
        # Before arming, the ack is reported too: the test checks every answered ack.
        if answer.status == 200:
            print(job["id"], flush=True)


if __name__ == "__main__":
    # The server gone mid-request: nothing more was answered.
    with contextlib.suppress(OSError, http.client.HTTPException):
        main()
