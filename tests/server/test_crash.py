"""SIGKILL the real server mid-load, many times, and prove what docs/durability.md promises.

Each cycle starts `hopper serve` on the same data directory, runs concurrent producers
(HTTP pushes, half of them `durable`) and workers (pull, then ack or fail) against it, and
kills the whole process group with SIGKILL right after some client got an answer, at a
random moment. A SIGKILL loses nothing that was answered, under every policy, so after
each kill the recovered directory must hold:

- every push answered 200 (durable or not);
- every answered ack as a completed job and every answered fail as a failed one (the
  jobs have one attempt), so no job comes back after its ack or fail was answered;
- unique ids, no job in two states, counts equal to lists (checked by opening the
  directory with the embedded engine after the kill);

and no job whose ack or fail was answered is delivered again, in later cycles or when
the queue is drained at the end.

The kill follows an answered ack at once (`crash_killer.py`, a single-threaded client in
its own process), and that ack is sent just after a durable push from another
connection: its record then reaches the log while the writer thread is in the push's
`fdatasync`, which is when an answer given before the record's `write` would be lost.
"""

from __future__ import annotations

import fcntl
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from hopper import Engine
from hopper.server_process import ServerProcess, ServerStartError
from support import HOST

LOAD_SECONDS = (0.3, 1.2)  # the killer arms at a random moment in this range
PROBE_DELAY_US = (0, 300)  # durable push -> probe ack, see crash_killer.py
KILLER = Path(__file__).with_name("crash_killer.py")
KILLER_TIMEOUT_S = 20.0  # the killer's own deadline is 10 s
CLIENTS = 8  # producers, and as many workers
MAX_REQUESTS = 5000  # per client and cycle
STATES = ("waiting", "waiting-children", "delayed", "active", "completed", "failed")


class Round:
    """What the clients were told, shared by the producer and worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pushed: set[str] = set()
        self.acked: set[str] = set()
        self.failed: set[str] = set()
        self.delivered_again: list[str] = []
        self.stop = threading.Event()

    def seen(self, job_id: str) -> None:
        with self.lock:
            if job_id in self.acked or job_id in self.failed:
                self.delivered_again.append(job_id)


def start(data_dir: Path, fsync: str, log: Path) -> ServerProcess:
    """`hopper serve` on the directory, in its own session: a SIGKILL reaches Granian's
    main process and its worker at once."""
    server = ServerProcess.hopper(
        env={"HOPPER_DATA_DIR": str(data_dir), "HOPPER_FSYNC": fsync}, log=log
    )
    try:
        server.start()
    except ServerStartError as e:
        pytest.fail(str(e))
    return server


def kill(server: ServerProcess, data_dir: Path) -> None:
    """SIGKILLs the server's process group and waits until the directory's lock is free:
    Granian's worker dies with its parent, but only its own exit releases the lock."""
    server.kill()
    deadline = time.monotonic() + 10
    with (data_dir / "LOCK").open("a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def producer(url: str, rnd: Round, n: int) -> None:
    with httpx.Client(base_url=url, timeout=5) as c:
        for i in range(MAX_REQUESTS):
            if rnd.stop.is_set():
                return
            body = {"data": {"p": n, "i": i}, "durable": i % 2 == 0, "maxAttempts": 1}
            try:
                r = c.post("/queues/crash/jobs", json=body)
            except httpx.HTTPError:
                return  # the server is gone: nothing was promised for this push
            if r.status_code == 200:
                with rnd.lock:
                    rnd.pushed.add(r.json()["id"])


def worker(url: str, rnd: Round, n: int) -> None:
    with httpx.Client(base_url=url, timeout=5) as c:
        for i in range(MAX_REQUESTS):
            if rnd.stop.is_set():
                return
            try:
                r = c.get("/queues/crash/jobs")
                job = r.json().get("job") if r.status_code == 200 else None
                if job is None:
                    continue
                rnd.seen(job["id"])
                token = r.json()["token"]
                fail = (n + i) % 4 == 0
                verb = "fail" if fail else "ack"
                a = c.post(f"/jobs/{job['id']}/{verb}", json={"token": token})
            except httpx.HTTPError:
                return
            if a.status_code == 200:
                with rnd.lock:
                    (rnd.failed if fail else rnd.acked).add(job["id"])


def check_on_disk(data_dir: Path, rnd: Round) -> None:
    """Opens the killed server's directory with the embedded engine (real recovery of
    the same files) and checks the promises and the invariants."""
    engine = Engine(data_dir=data_dir)
    try:
        report = engine.recovery_report()
        assert report is not None and report["orphans"] == 0, report
        missing = [i for i in rnd.pushed if engine.get(i) is None]
        assert not missing, f"{len(missing)} answered pushes lost, e.g. {missing[:3]}"
        for finished, state in ((rnd.acked, "completed"), (rnd.failed, "failed")):
            undone = [
                (i, got and got["state"])
                for i in finished
                if (got := engine.get(i)) is None or got["state"] != state
            ]
            assert not undone, f"{len(undone)} answered changes to {state} undone: {undone[:3]}"
        counts = engine.counts("crash")
        seen: dict[str, str] = {}
        for state in STATES:
            _, total = engine.list_jobs("crash", state, 0, 0)
            assert total == counts[state]
            for start in range(0, total, 1000):
                page, _ = engine.list_jobs("crash", state, start, start + 999)
                for job in page:
                    assert job["id"] not in seen, (
                        f"{job['id']} is {seen.get(job['id'])} and {state}"
                    )
                    seen[job["id"]] = state
        assert len(seen) == sum(counts.values())
    finally:
        engine.close()


@pytest.mark.parametrize(("fsync", "cycles"), [("interval", 6), ("never", 2), ("always", 2)])
def test_sigkill_mid_load_loses_nothing_answered(tmp_path: Path, fsync: str, cycles: int) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "server.log"
    rnd = Round()
    rng = random.Random(7)
    for cycle in range(cycles):
        server = start(data_dir, fsync, log)
        url = server.url
        rnd.stop.clear()
        threads = [
            threading.Thread(target=role, args=(url, rnd, n))
            for n in range(CLIENTS)
            for role in (producer, worker)
        ]
        for t in threads:
            t.start()
        # The killer exits by itself within its deadline; the test kills after it anyway.
        killer = subprocess.run(
            [
                sys.executable,
                str(KILLER),
                HOST,
                url.rsplit(":", 1)[1],
                str(server.pid),
                str(rng.uniform(*LOAD_SECONDS)),
                str(rng.uniform(*PROBE_DELAY_US)),
            ],
            capture_output=True,
            timeout=KILLER_TIMEOUT_S,
            check=True,
        )
        kill(server, data_dir)
        rnd.stop.set()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads), "a client thread did not stop"
        killer_acks = killer.stdout.decode().split()
        rnd.acked.update(killer_acks)
        assert rnd.pushed and killer_acks, f"cycle {cycle}: no load reached the server"
        check_on_disk(data_dir, rnd)
        print(
            f"cycle {cycle} ({fsync}): {len(rnd.pushed)} pushes, "
            f"{len(rnd.acked)} acks, {len(rnd.failed)} fails answered so far"
        )

    # A last start: drain the queue over HTTP; nothing acked or failed may come back.
    server = start(data_dir, fsync, log)
    try:
        with httpx.Client(base_url=server.url, timeout=5) as c:
            for _ in range(50_000):
                job = c.get("/queues/crash/jobs").json()["job"]
                if job is None:
                    break
                rnd.seen(job["id"])
                c.post(f"/jobs/{job['id']}/ack", json={})
    finally:
        kill(server, data_dir)
    assert not rnd.delivered_again, rnd.delivered_again[:5]
