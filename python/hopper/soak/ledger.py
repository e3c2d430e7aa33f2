"""What the background producers and workers were told, shared by their threads, and
the checks on it. Each entry carries the server generation (restarts caused by the suite)
current when its request was sent: an answer from a generation that has not crashed since
is promised whatever the fsync policy; across a SIGKILL only what the policy promises is.

Load queues rotate (a new one every `rotate_every` pushes) so the server's retention
never removes a job the ledger still tracks, and old ones are verified and obliterated."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hopper.soak.errors import Violation


class IdRegistry:
    """Every id the server generated for the suite: none may be handed out twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[int] = set()

    def add(self, job_id: str, what: str) -> None:
        try:
            key = uuid.UUID(job_id).int
        except ValueError:
            key = hash(job_id)
        with self._lock:
            if key in self._seen:
                raise Violation("ids-unique", f"{what} answered id {job_id} a second time")
            self._seen.add(key)

    def __len__(self) -> int:
        return len(self._seen)


@dataclass
class QueueBook:
    name: str
    pushed: dict[str, tuple[bool, int]] = field(default_factory=dict)  # id → (durable, gen)
    acked: dict[str, tuple[float, int]] = field(default_factory=dict)  # id → (recv, gen)
    dead: set[str] = field(default_factory=set)  # failed for good
    pushes: int = 0
    rotated_at: float | None = None


class Ledger:
    def __init__(self, *, always: bool, run_id: str, ids: IdRegistry, rotate_every: int) -> None:
        self.always = always
        self.run_id = run_id
        self.ids = ids
        self.rotate_every = rotate_every
        self.lock = threading.Lock()
        self.generation = 0
        self.books: dict[str, QueueBook] = {}
        self._serial = 0
        self.current = self._new_queue()
        self.pushed = self.acked = self.failed = self.delivered = 0
        self.redelivered_allowed = 0
        self.lost_unpromised = 0
        self.retired = 0

    def _new_queue(self) -> str:
        self._serial += 1
        name = f"soak-{self.run_id}-load-{self._serial}"
        self.books[name] = QueueBook(name)
        return name

    # ----- used by the load threads ------------------------------------------------------

    def push_target(self, jobs: int = 1) -> tuple[str, int]:
        with self.lock:
            book = self.books[self.current]
            if book.pushes >= self.rotate_every:
                book.rotated_at = time.monotonic()
                self.current = self._new_queue()
                book = self.books[self.current]
            book.pushes += jobs
            return self.current, self.generation

    def pull_queues(self) -> list[str]:
        with self.lock:
            return [self.current, *(q for q in self.books if q != self.current)]

    def gen(self) -> int:
        with self.lock:
            return self.generation

    def record_push(self, queue: str, job_ids: list[str], durable: bool, gen: int) -> None:
        for job_id in job_ids:
            self.ids.add(job_id, f"a load push to {queue}")
        with self.lock:
            book = self.books.get(queue)
            if book is None:
                return  # already retired
            for job_id in job_ids:
                book.pushed[job_id] = (durable, gen)
            self.pushed += len(job_ids)

    def record_delivery(self, queue: str, job_id: str, sent: float) -> None:
        with self.lock:
            self.delivered += 1
            book = self.books.get(queue)
            if book is None or job_id not in book.acked:
                return
            recv, gen = book.acked[job_id]
            if recv >= sent:
                return  # the pull may have been served before the ack: not a repeat
            if not self.always and gen < self.generation:
                # The ack was answered before a SIGKILL that the policy lets undo it.
                del book.acked[job_id]
                self.redelivered_allowed += 1
                return
        raise Violation(
            "no-double-completion",
            f"load job {job_id} ({queue}) was delivered again by a pull sent "
            f"{sent - recv:.3f} s after its ack was answered",
        )

    def record_ack(self, queue: str, job_id: str, recv: float, gen: int) -> None:
        with self.lock:
            book = self.books.get(queue)
            if book is not None:
                book.acked[job_id] = (recv, gen)
                book.dead.discard(job_id)
            self.acked += 1

    def record_final_fail(self, queue: str, job_id: str) -> None:
        with self.lock:
            book = self.books.get(queue)
            if book is not None:
                book.dead.add(job_id)
            self.failed += 1

    # ----- used by the runner / machine -------------------------------------------------

    def crashed(self) -> None:
        with self.lock:
            self.generation += 1

    def queues(self) -> list[str]:
        with self.lock:
            return list(self.books)

    def retirable(self, now: float, settle_s: float, give_up_s: float) -> list[str]:
        """Queues no longer pushed to whose jobs are all finished (or that are old)."""
        with self.lock:
            out = []
            for book in self.books.values():
                if book.rotated_at is None or now - book.rotated_at < settle_s:
                    continue
                done = all(i in book.acked or i in book.dead for i in book.pushed)
                if done or now - book.rotated_at >= give_up_s:
                    out.append(book.name)
            return out

    def forget(self, queue: str) -> None:
        with self.lock:
            if self.books.pop(queue, None) is not None:
                self.retired += 1

    def verify(
        self,
        queue: str,
        states: dict[str, str],
        get: Callable[[str], dict[str, Any] | None],
        tally: Callable[[str, int], None],
    ) -> None:
        """`states` is a listing of the queue taken after this call's snapshot point; a
        tracked job missing from it (or not completed though acked) is looked up once more
        (it may have moved between pages) before it counts as lost. A SIGKILL during the
        verification (the generation moved) voids what it found: the next one judges."""
        with self.lock:
            book = self.books.get(queue)
            if book is None:
                return
            pushed = dict(book.pushed)
            acked = dict(book.acked)
            gen_now = self.generation
        for job_id, (durable, gen) in pushed.items():
            if job_id in states:
                continue
            got = get(job_id)
            if got is not None:
                continue
            if (durable or self.always or gen == gen_now) and self.gen() == gen_now:
                raise Violation(
                    "no-lost-push",
                    f"load job {job_id} ({queue}, {'durable ' if durable else ''}push answered "
                    f"in server generation {gen}, now {gen_now}) is gone",
                )
            with self.lock:
                if (b := self.books.get(queue)) is not None:
                    b.pushed.pop(job_id, None)
                    b.acked.pop(job_id, None)
                self.lost_unpromised += 1
        tally("no-lost-push", len(pushed))
        for job_id, (_recv, gen) in acked.items():
            if states.get(job_id) == "completed":
                continue
            got = get(job_id)
            state = None if got is None else got.get("state")
            if state == "completed":
                continue
            if (self.always or gen == gen_now) and self.gen() == gen_now:
                raise Violation(
                    "no-double-completion",
                    f"load job {job_id} ({queue}) was acked (answered in generation {gen}, "
                    f"now {gen_now}) but is {state or 'gone'}",
                )
            with self.lock:
                if (b := self.books.get(queue)) is not None:
                    b.acked.pop(job_id, None)
        tally("no-double-completion", len(acked))
