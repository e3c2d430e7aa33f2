"""Load for the cluster failure tests: producers and consumers through every broker's
public HTTP port, bounded in count and time, and a ledger of what the clients were told
(a client of a killed broker moves on to the next)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
from hopper.server_process import ServerProcess

MAX_OPS = 20_000  # per load thread


@dataclass
class Ledger:
    """What the clients were told, with when they asked and when they heard."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pushed: dict[str, float] = field(default_factory=dict)  # id → answer received
    acked: dict[str, float] = field(default_factory=dict)  # id → ack answer received
    late: list[str] = field(default_factory=list)  # delivered after an acknowledged ack
    delivered: set[str] = field(default_factory=set)
    refused: int = 0
    ok_times: list[float] = field(default_factory=list)  # when each push was answered


class Load:
    """Producers and consumers on every broker until `stop()`."""

    def __init__(self, brokers: list[ServerProcess], *queues: str) -> None:
        self.brokers, self.queues = brokers, queues
        self.ledger = Ledger()
        self.done = threading.Event()
        self.dead: set[int] = set()  # brokers the test killed: clients move on
        self.threads = [
            threading.Thread(target=self._produce, args=(i,), daemon=True) for i in range(3)
        ] + [threading.Thread(target=self._consume, args=(i,), daemon=True) for i in range(3)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(30)

    def _url(self, i: int) -> str:
        for step in range(len(self.brokers)):
            j = (i + step) % len(self.brokers)
            if j not in self.dead:
                return self.brokers[j].url
        raise AssertionError("every broker is down")

    def _produce(self, i: int) -> None:
        with httpx.Client(timeout=5) as client:
            for n in range(MAX_OPS):
                if self.done.is_set():
                    return
                try:
                    queue = self.queues[n % len(self.queues)]
                    got = client.post(f"{self._url(i)}/queues/{queue}/jobs", json={"data": n})
                except httpx.HTTPError:
                    got = None
                with self.ledger.lock:
                    if got is not None and got.status_code == 200:
                        self.ledger.pushed[got.json()["id"]] = time.monotonic()
                        self.ledger.ok_times.append(time.monotonic())
                    else:
                        self.ledger.refused += 1
                if got is None or got.status_code != 200:
                    i += 1
                    time.sleep(0.02)

    def _consume(self, i: int) -> None:
        with httpx.Client(timeout=5) as client:
            for n in range(MAX_OPS):
                if self.done.is_set():
                    return
                queue = self.queues[n % len(self.queues)]
                if not self.take(client, self._url(i), timeout_ms=200, queue=queue):
                    i += 1

    def take(
        self, client: httpx.Client, url: str, timeout_ms: int, queue: str | None = None
    ) -> bool | None:
        """Pulls one job (of `queue`, else the first queue) and acks it. True: done;
        None: the queue was empty; False: the broker failed (the caller moves on)."""
        sent = time.monotonic()
        try:
            queue = queue or self.queues[0]
            got = client.get(f"{url}/queues/{queue}/jobs?timeout={timeout_ms}")
            body = got.json() if got.status_code == 200 else None
            if body is None:
                time.sleep(0.02)
                return False
            job = body["job"]
            if job is None:
                return None
            with self.ledger.lock:
                self.ledger.delivered.add(job["id"])
                answered = self.ledger.acked.get(job["id"])
                if answered is not None and answered < sent:
                    self.ledger.late.append(job["id"])
            ack = client.post(f"{url}/jobs/{job['id']}/ack", json={"token": body["token"]})
            if ack.status_code == 200:
                with self.ledger.lock:
                    self.ledger.acked.setdefault(job["id"], time.monotonic())
            return True
        except httpx.HTTPError:
            time.sleep(0.02)
            return False

    def drain(self, url: str, within: float) -> None:
        """Pulls and acks what is left (a job leased by a dead broker's client comes back
        after the stall interval) until every acknowledged push was delivered."""
        deadline = time.monotonic() + within
        with httpx.Client(timeout=5) as client:
            for n in range(MAX_OPS):
                if (
                    time.monotonic() >= deadline
                    or not set(self.ledger.pushed) - self.ledger.delivered
                ):
                    return
                self.take(client, url, timeout_ms=500, queue=self.queues[n % len(self.queues)])


def first_ok_after(ledger: Ledger, t: float) -> float | None:
    with ledger.lock:
        later = [x for x in ledger.ok_times if x > t]
    return min(later) - t if later else None
