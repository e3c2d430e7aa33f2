"""The hypothesis state machine, run against a live server.

Each example gets two fresh queues and a fresh model. Rules push (priority, delay,
lifo, retries, durable, uniqueKey and jobId dedup, batches), pull, ack and fail over
HTTP and the WebSocket channel, and inject faults: a worker that dies holding a job, a
WebSocket dropped with jobs pulled on it, a SIGKILL and restart (when the suite started
the server). Invariants run after every step.

Rules never raise into hypothesis: a violation is recorded in the context and every
later step is a no-op, so hypothesis never replays or shrinks against the live server
(its state cannot be replayed); the context keeps the recent steps for the report."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import hypothesis.strategies as st
from hypothesis.errors import HypothesisException
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from hopper._engine import DEFAULT_BACKOFF_MS, DEFAULT_MAX_ATTEMPTS
from hopper.soak.api import HttpApi, Pulled, WsSession
from hopper.soak.checks import check_counts
from hopper.soak.context import Retired, SoakContext
from hopper.soak.errors import Violation
from hopper.soak.model import MJob

F = TypeVar("F", bound=Callable[..., Any])
VIA = st.sampled_from(("http", "ws"))
QUEUE = st.sampled_from((0, 1))
# Draws never depend on the server's answers (hypothesis checks that a replayed prefix
# draws the same way): a job is picked by an index taken modulo what there is.
PICK = st.integers(0, 2**16)
DROP_RELEASE_S = 3.0
STALL_WAIT_S = 3.0


def guarded(counts_as_step: bool) -> Callable[[F], F]:
    """Skips the body once the run is over; turns what it raises into the run's failure."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(self: SoakMachine, *args: Any, **kwargs: Any) -> Any:
            ctx = self.ctx
            if ctx.stopped:
                return None
            if counts_as_step:
                ctx.steps += 1
                ctx.note(fn.__name__, kwargs)
            try:
                return fn(self, *args, **kwargs)
            except HypothesisException:
                raise
            except Exception as e:
                ctx.fail(e)
            return None

        return inner  # type: ignore[return-value]

    return wrap


class SoakMachine(RuleBasedStateMachine):
    def __init__(self, ctx: SoakContext) -> None:
        super().__init__()
        self.ctx = ctx
        ctx.examples += 1
        prefix = f"soak-{ctx.run_id}-m{ctx.examples}"
        self.queues = (f"{prefix}-a", f"{prefix}-b")
        self.id_prefix = prefix
        self.model = ctx.new_model()
        ctx.current = Retired(self.model, self.queues)
        self.custom_ids: list[str] = []
        self._ws: WsSession | None = None

    @property
    def api(self) -> HttpApi:
        return self.ctx.api

    def ws(self) -> WsSession:
        if self._ws is None:
            self._ws = self.ctx.ws()
        return self._ws

    def close_ws(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def client(self, via: str) -> HttpApi | WsSession:
        return self.ws() if via == "ws" else self.api

    def teardown(self) -> None:
        now = time.monotonic()
        for j in self.model.held():
            # A closed socket releases its leases at once; an HTTP lease stalls.
            due = now + self.model.slack_s if j.via == "ws" else self.model.lease_deadline(j)
            self.model.abandon(j, due)
        self.close_ws()
        if self.ctx.current is not None:
            self.ctx.retired.append(self.ctx.current)
            self.ctx.current = None

    # ----- pushes ------------------------------------------------------------------------

    def _push(
        self, queue: str, client: HttpApi | WsSession, body: dict[str, Any], what: str
    ) -> MJob | None:
        exp = self.model.expect_push(queue, body.get("uniqueKey"), body.get("jobId"))
        got = client.push(queue, body)
        new = self.model.check_push(exp, got, what)
        self.ctx.tally.add("ids-unique")
        if not new:
            return None
        if "jobId" not in body:
            self.ctx.load.ledger.ids.add(got, what)
        job = MJob(
            id=got,
            queue=queue,
            promised=bool(body.get("durable")) or self.model.always,
            max_attempts=int(body.get("maxAttempts", DEFAULT_MAX_ATTEMPTS)),
            backoff=int(body.get("backoff", DEFAULT_BACKOFF_MS)),
            priority=int(body.get("priority", 0)),
            unique_key=body.get("uniqueKey"),
            custom_id="jobId" in body,
        )
        self.model.add(job, int(body.get("delay", 0)))
        self.ctx.machine_jobs += 1
        self.ctx.stats.pushed += 1
        return job

    @rule(
        q=QUEUE,
        via=VIA,
        priority=st.integers(-1, 2),
        delay=st.sampled_from((0, 0, 0, 40, 250)),
        durable=st.booleans(),
        dedup=st.sampled_from(("none", "none", "none", "key1", "key2", "new-id", "same-id")),
        max_attempts=st.integers(1, 3),
        backoff=st.sampled_from((0, 0, 30, 200)),
        lifo=st.booleans(),
    )
    @guarded(True)
    def push(
        self,
        q: int,
        via: str,
        priority: int,
        delay: int,
        durable: bool,
        dedup: str,
        max_attempts: int,
        backoff: int,
        lifo: bool,
    ) -> None:
        body: dict[str, Any] = {
            "data": {"n": self.ctx.steps},
            "priority": priority,
            "delay": delay,
            "durable": durable,
            "maxAttempts": max_attempts,
            "backoff": backoff,
            "lifo": lifo,
        }
        if dedup in ("key1", "key2"):
            body["uniqueKey"] = dedup
        elif dedup == "new-id" or (dedup == "same-id" and not self.custom_ids):
            job_id = f"{self.id_prefix}-id{len(self.custom_ids) + 1}"
            self.custom_ids.append(job_id)
            body["jobId"] = job_id
        elif dedup == "same-id":
            body["jobId"] = self.custom_ids[self.ctx.steps % len(self.custom_ids)]
        self._push(self.queues[q], self.client(via), body, f"a {via} push")

    @rule(q=QUEUE, via=VIA, n=st.integers(2, 4), durable=st.booleans())
    @guarded(True)
    def push_batch(self, q: int, via: str, n: int, durable: bool) -> None:
        queue = self.queues[q]
        jobs = [{"data": {"b": k}, "durable": durable, "backoff": 0} for k in range(n)]
        ids = self.ws().push_many(queue, jobs) if via == "ws" else self.api.push_bulk(queue, jobs)
        self.ctx.require(
            len(ids) == n and len(set(ids)) == n,
            "ids-unique",
            f"a batch of {n} answered ids {ids}",
        )
        for got in ids:
            exp = self.model.expect_push(queue, None, None)
            self.model.check_push(exp, got, f"a {via} batch push")
            self.ctx.load.ledger.ids.add(got, f"a {via} batch push")
            job = MJob(got, queue, durable or self.model.always, 3, 0, 0, None, False)
            self.model.add(job, 0)
            self.ctx.machine_jobs += 1
            self.ctx.stats.pushed += 1

    # ----- work --------------------------------------------------------------------------

    def _pull(self, queue: str, via: str, client: HttpApi | WsSession) -> MJob | None:
        sent = time.monotonic()
        got: Pulled | None = client.pull(queue)
        recv = time.monotonic()
        self.model.expire_leases(recv)
        self.ctx.tally.add("state-consistent")
        if got is None:
            self.model.on_pull_none(queue, via)
            return None
        job, token = got
        return self.model.on_pulled(queue, job, token, via, sent, recv)

    @rule(q=QUEUE, via=VIA)
    @guarded(True)
    def pull(self, q: int, via: str) -> None:
        self._pull(self.queues[q], via, self.client(via))

    def _pick_held(self, pick: int, q: int, via: str) -> MJob | None:
        """A held job (by `pick`), or a freshly pulled one when none is held."""
        held = self.model.held()
        if held:
            return held[pick % len(held)]
        return self._pull(self.queues[q], via, self.client(via))

    @rule(pick=PICK, q=QUEUE, via=VIA)
    @guarded(True)
    def ack(self, pick: int, q: int, via: str) -> None:
        j = self._pick_held(pick, q, via)
        if j is None:
            return
        if not self.model.lease_fresh(j, time.monotonic()):
            self.model.abandon(j, self.model.lease_deadline(j))
            return
        ok = self.client(via).ack(j.id, j.token, {"soak": True})
        self.model.on_ack(j, ok, time.monotonic())
        self.ctx.tally.add("state-consistent")
        if ok:
            self.ctx.stats.completed += 1

    @rule(pick=PICK, q=QUEUE, via=VIA)
    @guarded(True)
    def fail(self, pick: int, q: int, via: str) -> None:
        j = self._pick_held(pick, q, via)
        if j is None:
            return
        if not self.model.lease_fresh(j, time.monotonic()):
            self.model.abandon(j, self.model.lease_deadline(j))
            return
        ok = self.client(via).fail(j.id, j.token, "soak: failed on purpose")
        self.model.on_fail(j, ok, time.monotonic())
        self.ctx.tally.add("state-consistent")

    @rule(pick=PICK)
    @guarded(True)
    def get(self, pick: int) -> None:
        ids = sorted(self.model.jobs)
        if ids:
            self._observe(self.model.jobs[ids[pick % len(ids)]])

    def _observe(self, j: MJob) -> dict[str, Any] | None:
        sent = time.monotonic()
        got = self.api.get(j.id)
        self.model.expire_leases(time.monotonic())
        self.model.check_observed(j, got, sent)
        self.ctx.tally.add("no-lost-push")
        if j.acked:
            self.ctx.tally.add("no-double-completion")
        return got

    # ----- faults ------------------------------------------------------------------------

    def _take_one(self, queue: str, client: HttpApi | WsSession, via: str) -> MJob | None:
        j = self._pull(queue, via, client)
        if j is None:
            body = {"data": {"fault": True}, "backoff": 0}
            self._push(queue, client, body, f"a {via} push")
            j = self._pull(queue, via, client)
        return j

    @rule(q=QUEUE)
    def worker_dies(self, q: int) -> None:
        if "worker-dies" in self.ctx.faults:
            self.inject_worker_dies(q=q)

    @guarded(True)
    def inject_worker_dies(self, q: int) -> None:
        """A worker pulls over HTTP and is never heard of again: the job must come back
        (waiting, or failed on its last allowed stall) after the stall interval."""
        j = self._take_one(self.queues[q], self.api, "http")
        if j is None:
            raise Violation("state-consistent", "a pull right after a push returned no job")
        self.model.abandon(j, self.model.lease_deadline(j))
        self.ctx.faults["worker-dies"] += 1

    @rule(q=QUEUE, n=st.integers(1, 3))
    def connection_drop(self, q: int, n: int) -> None:
        if "connection-drop" in self.ctx.faults:
            self.inject_connection_drop(q=q, n=n)

    @guarded(True)
    def inject_connection_drop(self, q: int, n: int) -> None:
        """Pull jobs on a fresh WebSocket and drop it without a close handshake: every job
        it held goes back to waiting (released, not stalled) promptly."""
        queue = self.queues[q]
        sock = self.ctx.ws()
        held: list[tuple[MJob, int]] = []
        try:
            for _ in range(n):
                j = self._take_one(queue, sock, "ws-dropped")
                if j is None:
                    break
                held.append((j, j.stalls))
        finally:
            sock.abort()
        dropped = time.monotonic()
        self.ctx.faults["connection-drop"] += 1
        for j, _ in held:
            self.model.abandon(j, dropped + DROP_RELEASE_S)
        pending = [j for j, _ in held]
        deadline = dropped + DROP_RELEASE_S
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(400):
            for j in list(pending):
                got = self.api.get(j.id)
                if got is None:
                    raise Violation("no-lost-push", f"{j.describe()} is gone after a drop")
                if got["state"] != "active":
                    seen[j.id] = got
                    pending.remove(j)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        self.ctx.tally.add("dropped-connection-releases")
        if pending:
            raise Violation(
                "dropped-connection-releases",
                f"{pending[0].describe()} is still active {DROP_RELEASE_S} s after the "
                "WebSocket holding it was dropped",
            )
        for j, stalls in held:
            got = seen[j.id]
            if got["state"] != "waiting" or int(got.get("stalls", 0)) != stalls:
                raise Violation(
                    "dropped-connection-releases",
                    f"{j.id} came back {got['state']!r} with stalls {got.get('stalls')} "
                    f"(was {stalls}): it was not released by the disconnect",
                )
            self.model.adopt(j, got, time.monotonic())

    @rule()
    def server_kill(self) -> None:
        if self.ctx.can_kill():  # not a precondition: it depends on the clock
            self.inject_server_kill()

    @guarded(True)
    def inject_server_kill(self) -> None:
        self.close_ws()  # it dies with the server; the next WS step reconnects
        self.ctx.kill_and_restart()

    @rule()
    @guarded(True)
    def wait_for_stalls(self) -> None:
        """Lets time pass (delays, backoff, stall detection run on the server's clock):
        waits, at most STALL_WAIT_S, for the next given-up lease to be due, then checks
        the due ones came back."""
        now = time.monotonic()
        due = [j.return_by for j in self.model.abandoned() if j.return_by is not None]
        if due:
            time.sleep(max(0.0, min(STALL_WAIT_S, min(due) - now)))
        self._check_due()

    def _check_due(self) -> None:
        now = time.monotonic()
        for j in self.model.abandoned():
            if j.return_by is not None and j.return_by < now:
                got = self._observe(j)
                self.ctx.tally.add("stalled-jobs-return")
                if got is not None:
                    self.model.adopt(j, got, time.monotonic())

    # ----- invariants --------------------------------------------------------------------

    @invariant()
    @guarded(False)
    def counts_consistent(self) -> None:
        for queue in self.queues:
            check_counts(self.api, self.model, queue, self.ctx.tally)

    @invariant()
    @guarded(False)
    def given_up_leases_return(self) -> None:
        self._check_due()

    @invariant()
    @guarded(False)
    def server_wide(self) -> None:
        self.ctx.periodic()

    @guarded(False)
    def check_all(self) -> None:
        """Every invariant once, and every job of this example looked up."""
        for queue in self.queues:
            check_counts(self.api, self.model, queue, self.ctx.tally)
        self._check_due()
        for j in list(self.model.jobs.values()):
            self._observe(j)
