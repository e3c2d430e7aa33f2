"""Background load while the state machine steps: producers (HTTP and WebSocket pushes,
some batches, half durable) and workers (HTTP and WebSocket pull + ack, some fails) on
the ledger's load queues, at a bounded rate, each checking what it is handed. A janitor
verifies and obliterates load queues once they are rotated out and done.

A thread that meets an unreachable server (a SIGKILL the suite injected) waits and
reconnects; anything else it meets ends the run through `fail`."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from hopper.soak.api import ApiError, HttpApi, WsSession
from hopper.soak.config import SoakConfig
from hopper.soak.errors import Unavailable, Violation
from hopper.soak.ledger import Ledger

Fail = Callable[[BaseException], None]
Tally = Callable[[str, int], None]
RETRY_S = 0.1
PULL_WAIT_MS = 200


class Load:
    def __init__(
        self,
        config: SoakConfig,
        url: str,
        ledger: Ledger,
        fail: Fail,
        tally: Tally,
        *,
        seed: int,
        transport: Any = None,
    ) -> None:
        self.config = config
        self.url = url
        self.ledger = ledger
        self.fail = fail
        self.tally = tally
        self.seed = seed
        self.transport = transport
        self.stop_event = threading.Event()
        self.down = threading.Event()  # set by the runner while its server is killed
        self.verify_lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    # ----- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        for i in range(self.config.producers):
            self._spawn(f"soak-producer-{i}", self._producer, i)
        for i in range(self.config.workers):
            self._spawn(f"soak-worker-{i}", self._worker, i)
        self._spawn("soak-janitor", self._janitor, 0)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(15)

    def _spawn(self, name: str, target: Callable[[int], None], i: int) -> None:
        def body() -> None:
            try:
                target(i)
            except BaseException as e:  # reported by the runner, which ends the run
                self.fail(e)
                self.stop_event.set()

        t = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def _api(self) -> HttpApi:
        return HttpApi(
            self.url,
            self.config.token,
            api_prefix=self.config.api_prefix,
            timeout=10.0,
            transport=self.transport,
        )

    def _pause(self) -> None:
        self.stop_event.wait(RETRY_S)

    # ----- producers ---------------------------------------------------------------------

    def _producer(self, i: int) -> None:
        rng = random.Random(self.seed * 1000 + i)
        use_ws = i % 2 == 1
        api = self._api()
        ws: WsSession | None = None
        interval = 1.0 / self.config.rate
        next_at = time.monotonic()
        n = 0
        try:
            while not self.stop_event.is_set():
                next_at = max(next_at + interval, time.monotonic() - interval)
                self.stop_event.wait(max(0.0, next_at - time.monotonic()))
                if self.stop_event.is_set():
                    return
                n += 1
                batch = 5 if n % 10 == 0 else 1
                durable = rng.random() < 0.5
                jobs = [
                    {
                        "data": {"p": i, "n": n, "k": k},
                        "durable": durable,
                        "priority": rng.randint(0, 3),
                        "delay": rng.choice((0, 0, 0, 0, 50)),
                        "maxAttempts": 2,
                        "backoff": rng.choice((0, 20)),
                    }
                    for k in range(batch)
                ]
                queue, gen = self.ledger.push_target(batch)
                try:
                    if use_ws and ws is None:
                        ws = WsSession(self.url, self.config.token)
                    if ws is not None:
                        ids = ws.push_many(queue, jobs) if batch > 1 else [ws.push(queue, jobs[0])]
                    elif batch > 1:
                        ids = api.push_bulk(queue, jobs)
                    else:
                        ids = [api.push(queue, jobs[0])]
                except Unavailable:
                    if ws is not None:
                        ws.close()
                        ws = None
                    self._pause()
                    continue
                except ApiError as e:
                    raise Violation("protocol", f"load push to {queue}: {e}") from e
                self.ledger.record_push(queue, ids, durable, gen)
        finally:
            api.close()
            if ws is not None:
                ws.close()

    # ----- workers -----------------------------------------------------------------------

    def _worker(self, i: int) -> None:
        rng = random.Random(self.seed * 1000 + 500 + i)
        use_ws = i % 2 == 1
        api = self._api()
        ws: WsSession | None = None
        try:
            while not self.stop_event.is_set():
                queues = self.ledger.pull_queues()
                for k, queue in enumerate(queues):
                    if self.stop_event.is_set():
                        return
                    try:
                        if use_ws and ws is None:
                            ws = WsSession(self.url, self.config.token)
                        wait = PULL_WAIT_MS if k == 0 else 0
                        sent = time.monotonic()
                        got = ws.pull(queue, wait) if ws is not None else api.pull(queue, wait)
                        if got is None:
                            continue
                        job, token = got
                        job_id = str(job["id"])
                        self.ledger.record_delivery(queue, job_id, sent)
                        last = int(job.get("attempts", 0)) + 1 >= int(job.get("maxAttempts", 1))
                        if rng.random() < 0.15:
                            done = (ws or api).fail(job_id, token, "soak: deliberate failure")
                            if done and last:
                                self.ledger.record_final_fail(queue, job_id)
                        else:
                            gen = self.ledger.gen()
                            done = (ws or api).ack(job_id, token, {"w": i})
                            if done:
                                self.ledger.record_ack(queue, job_id, time.monotonic(), gen)
                    except Unavailable:
                        if ws is not None:
                            ws.close()
                            ws = None
                        self._pause()
                        break
                    except ApiError as e:
                        raise Violation("protocol", f"load worker on {queue}: {e}") from e
        finally:
            api.close()
            if ws is not None:
                ws.close()

    # ----- janitor -----------------------------------------------------------------------

    def _janitor(self, _i: int) -> None:
        api = self._api()
        try:
            while not self.stop_event.wait(2.0):
                if self.down.is_set():
                    continue
                for queue in self.ledger.retirable(time.monotonic(), 5.0, 120.0):
                    with contextlib.suppress(Unavailable):
                        self.retire(api, queue)
        finally:
            api.close()

    def verify(self, api: HttpApi, queue: str) -> None:
        with self.verify_lock:
            self.ledger.verify(queue, api.states(queue), api.get, self.tally)

    def verify_all(self, api: HttpApi) -> None:
        for queue in self.ledger.queues():
            self.verify(api, queue)

    def retire(self, api: HttpApi, queue: str) -> None:
        with self.verify_lock:
            self.ledger.verify(queue, api.states(queue), api.get, self.tally)
            api.obliterate(queue)
            self.ledger.forget(queue)
