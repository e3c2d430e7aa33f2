"""The four scenarios, written against `Transport` (HTTP or WS alike).

push     each operation is one push; latency = push sent -> reply.
pullack  on a pre-filled queue, each operation is a pull (no wait) then the ack of that
         job; latency = pull sent -> ack answered. An empty pull ends the run (ran dry).
e2e      producers push jobs carrying their (intended and actual) push time; workers
         long-poll pull and ack; latency = ack answered - push time (push -> worker ->
         ack). Closed loop: each producer waits for its job to be acked before the next.
mixed    pushers and pullers (pull long-poll + ack) at once, `lanes` of each; two
         series. A puller's latency includes any wait for a job to arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hopper.bench.histograms import Recorder
from hopper.bench.schedule import Pacer, Slot, now_ns
from hopper.bench.transport import PAYLOAD, ConnectionLost, RequestFailed, Transport

POLL_MS = 1000  # long-poll wait of the e2e workers and mixed pullers
PREFILL_CAP = 5_000_000


@dataclass
class Plan:
    scenario: str
    queue: str
    lanes: int  # concurrent operations per side (HTTP connections, or WS sockets x window)
    workers: int  # e2e worker lanes
    warmup_s: float
    duration_s: float | None
    count: int | None
    rate: float | None
    timeout_s: float
    prefill: int | None  # pullack: jobs to pre-fill (None: enough for the run)

    @property
    def limit_s(self) -> float:
        """The hard bound of the measured phase, count mode included."""
        if self.duration_s is not None:
            return self.warmup_s + self.duration_s + self.timeout_s
        assert self.count is not None
        slack = self.count / self.rate if self.rate else 0.0
        return self.warmup_s + max(120.0, 2 * slack) + self.timeout_s

    def total_lanes(self) -> int:
        if self.scenario == "e2e":
            return self.lanes + self.workers
        if self.scenario == "mixed":
            return 2 * self.lanes
        return self.lanes


@dataclass
class RunState:
    """What the progress line and the report read while and after a scenario runs."""

    recorders: list[Recorder] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    phase: str = "starting"
    pacers: list[Pacer] = field(default_factory=list)
    prefilled: int = 0

    def pacer(self, plan: Plan, start_ns: int) -> Pacer:
        p = Pacer(
            start_ns=start_ns,
            warmup_s=plan.warmup_s,
            duration_s=plan.duration_s,
            count=plan.count,
            rate=plan.rate,
            limit_s=plan.limit_s,
        )
        self.pacers.append(p)
        return p

    def recorder(self, name: str, plan: Plan, measure_start_ns: int) -> Recorder:
        rec = Recorder(name, open_loop=plan.rate is not None)
        rec.first_ns = measure_start_ns
        self.recorders.append(rec)
        return rec

    def in_warmup(self) -> bool:
        return any(p.in_warmup() for p in self.pacers)


def payload(extra: Any = None) -> dict[str, Any]:
    if extra is None:
        return PAYLOAD
    return {**PAYLOAD, "bench": extra}


async def _gather(tasks: Sequence[Awaitable[None]], deadline_ns: int) -> bool:
    """Runs the lanes to the end or the deadline; cancels what is left. True if all ended."""
    running = [asyncio.ensure_future(t) for t in tasks]
    _done, pending = await asyncio.wait(running, timeout=max(0.0, (deadline_ns - now_ns()) / 1e9))
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending)
    for t in running:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    return not pending


async def _timed(
    pacer: Pacer, rec: Recorder, op: Callable[[], Awaitable[Any]]
) -> tuple[Slot, int, Any] | None:
    """One paced operation: waits for a slot, runs `op`, records it. None when done."""
    slot = await pacer.next()
    if slot is None:
        return None
    sent = now_ns()
    try:
        result = await op()
    except RequestFailed as e:
        if slot.measured:
            rec.error(str(e), now_ns())
        else:
            rec.unmeasured += 1
        if isinstance(e, ConnectionLost):
            pacer.stop(f"connection lost: {e}")
        return slot, sent, None
    done = now_ns()
    if slot.measured:
        rec.record(slot.intended_ns, sent, done)
    else:
        rec.unmeasured += 1
    return slot, sent, result


async def run_push(t: Transport, plan: Plan, st: RunState) -> None:
    start = now_ns()
    pacer = st.pacer(plan, start)
    rec = st.recorder("push", plan, pacer.measure_start_ns)
    st.phase = "run"

    async def lane(i: int) -> None:
        while await _timed(pacer, rec, lambda: t.push(i, plan.queue, PAYLOAD)) is not None:
            pass

    if not await _gather([lane(i) for i in range(plan.lanes)], start + int(plan.limit_s * 1e9)):
        st.notes.append("push: stopped at the time limit with requests in flight")


async def _prefill(t: Transport, plan: Plan, st: RunState) -> int:
    """Pushes the jobs the pullack run consumes. With --prefill: exactly that many. Else
    with --rate: the timetable's slots (+5 %); else (closed loop) --count jobs and pushes
    for as long as the run will last (a push costs less than a pull plus an ack, so the
    queue outlasts the run; an empty pull is reported as 'ran dry')."""
    st.phase = "prefill"
    run_s = plan.warmup_s + (plan.duration_s or 0.0)
    if plan.prefill is not None:
        need, for_s = plan.prefill, 0.0
    elif plan.rate is not None:
        slots = plan.rate * plan.warmup_s + (
            plan.count if plan.count is not None else plan.rate * run_s
        )
        need, for_s = int(slots * 1.05) + plan.lanes, 0.0
    else:
        need, for_s = plan.count or 0, run_s
    need = min(need, PREFILL_CAP)
    start = now_ns()
    until = start + int(for_s * 1e9)
    hard = start + int((plan.limit_s + for_s) * 1e9)
    errors: list[str] = []

    async def lane(i: int) -> None:
        while st.prefilled < PREFILL_CAP and (st.prefilled < need or now_ns() < until):
            st.prefilled += 1
            try:
                await t.push(i, plan.queue, PAYLOAD)
            except RequestFailed as e:
                st.prefilled -= 1
                errors.append(str(e))
                if len(errors) > 100:
                    raise RuntimeError(f"pre-fill failed: {errors[0]}") from e

    await _gather([lane(i) for i in range(plan.lanes)], hard)
    secs = (now_ns() - start) / 1e9
    st.notes.append(f"pullack: pre-filled {st.prefilled} jobs in {secs:.1f} s (unmeasured)")
    return st.prefilled


async def run_pullack(t: Transport, plan: Plan, st: RunState) -> None:
    await _prefill(t, plan, st)
    start = now_ns()
    pacer = st.pacer(plan, start)
    rec = st.recorder("pullack", plan, pacer.measure_start_ns)
    st.phase = "run"

    async def lane(i: int) -> None:
        while True:
            slot = await pacer.next()
            if slot is None:
                return
            sent = now_ns()
            try:
                job = await t.pull(i, plan.queue, 0)
                if job is None:
                    rec.empty += 1
                    pacer.stop("queue ran dry")
                    return
                await t.ack(i, job)
            except RequestFailed as e:
                if slot.measured:
                    rec.error(str(e), now_ns())
                if isinstance(e, ConnectionLost):
                    pacer.stop(f"connection lost: {e}")
                continue
            if slot.measured:
                rec.record(slot.intended_ns, sent, now_ns())
            else:
                rec.unmeasured += 1

    await _gather([lane(i) for i in range(plan.lanes)], start + int(plan.limit_s * 1e9))
    if pacer.stopped:
        hint = " (use --prefill to push more first)" if rec.empty else ""
        st.notes.append(f"pullack: stopped early: {pacer.stopped}{hint}")


async def run_e2e(t: Transport, plan: Plan, st: RunState) -> None:
    start = now_ns()
    pacer = st.pacer(plan, start)
    rec = st.recorder("e2e", plan, pacer.measure_start_ns)
    st.phase = "run"
    loop = asyncio.get_running_loop()
    waiting: dict[int, asyncio.Future[None]] = {}
    seq = itertools.count()
    counts = {"outstanding": 0, "pull_errors": 0, "foreign": 0}
    producers_left = plan.lanes
    drained = asyncio.Event()
    pull_error = ""

    def check_drained() -> None:
        if producers_left == 0 and counts["outstanding"] <= 0:
            drained.set()

    async def producer(i: int) -> None:
        nonlocal producers_left
        try:
            while (slot := await pacer.next()) is not None:
                s = next(seq)
                sent = now_ns()
                fut: asyncio.Future[None] | None = None
                if not pacer.open_loop:
                    fut = waiting[s] = loop.create_future()
                data = payload([s, slot.intended_ns, sent, int(slot.measured)])
                try:
                    await t.push(i, plan.queue, data)
                except RequestFailed as e:
                    waiting.pop(s, None)
                    if slot.measured:
                        rec.error(f"push: {e}", now_ns())
                    if isinstance(e, ConnectionLost):
                        pacer.stop(f"connection lost: {e}")
                    continue
                if slot.measured:
                    counts["outstanding"] += 1
                if fut is not None:
                    try:
                        await asyncio.wait_for(fut, plan.timeout_s)
                    except asyncio.TimeoutError:
                        waiting.pop(s, None)
        finally:
            producers_left -= 1
            check_drained()

    async def worker(i: int) -> None:
        nonlocal pull_error
        lane = plan.lanes + i  # its own connection, after the producers'
        while True:
            try:
                job = await t.pull(lane, plan.queue, POLL_MS)
            except ConnectionLost as e:
                pacer.stop(f"connection lost: {e}")
                drained.set()
                return
            except RequestFailed as e:
                counts["pull_errors"] += 1
                pull_error = pull_error or str(e)
                await asyncio.sleep(0.01)
                continue
            if job is None:
                continue
            try:
                await t.ack(lane, job)
                failed = ""
            except RequestFailed as e:
                failed = str(e)
            done = now_ns()
            mark = job.data.get("bench") if isinstance(job.data, dict) else None
            if not (isinstance(mark, list) and len(mark) == 4):
                counts["foreign"] += 1
                continue
            s, intended, sent, measured = mark
            if measured:
                counts["outstanding"] -= 1
                if failed:
                    rec.error(f"ack: {failed}", done)
                else:
                    rec.record(int(intended), int(sent), done)
            else:
                rec.unmeasured += 1
            fut = waiting.pop(int(s), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            check_drained()

    deadline = start + int(plan.limit_s * 1e9)
    workers = [asyncio.ensure_future(worker(i)) for i in range(plan.workers)]
    try:
        await _gather([producer(i) for i in range(plan.lanes)], deadline)
        st.phase = "drain"
        check_drained()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(drained.wait(), plan.timeout_s)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.wait(workers)
    if counts["outstanding"] > 0:
        rec.errors += counts["outstanding"]
        rec.error_sample = rec.error_sample or (
            f"{counts['outstanding']} pushed jobs not acked within {plan.timeout_s:g} s"
        )
        st.notes.append(f"e2e: {counts['outstanding']} measured jobs were not acked in time")
    if counts["pull_errors"]:
        st.notes.append(f"e2e: {counts['pull_errors']} worker pulls failed: {pull_error}")
    if pacer.stopped:
        st.notes.append(f"e2e: stopped early: {pacer.stopped}")
    if counts["foreign"]:
        st.notes.append(f"e2e: acked {counts['foreign']} jobs not pushed by this run")


async def run_mixed(t: Transport, plan: Plan, st: RunState) -> None:
    start = now_ns()
    push_pacer = st.pacer(plan, start)
    pull_pacer = st.pacer(plan, start)
    push_rec = st.recorder("push", plan, push_pacer.measure_start_ns)
    pull_rec = st.recorder("pullack", plan, pull_pacer.measure_start_ns)
    st.phase = "run"
    pushers_left = plan.lanes

    async def pusher(i: int) -> None:
        nonlocal pushers_left
        try:
            while await _timed(push_pacer, push_rec, lambda: t.push(i, plan.queue, PAYLOAD)):
                pass
        finally:
            pushers_left -= 1

    async def puller(i: int) -> None:
        lane = plan.lanes + i
        while (slot := await pull_pacer.next()) is not None:
            sent = now_ns()
            try:
                while (job := await t.pull(lane, plan.queue, POLL_MS)) is None:
                    pull_rec.empty += 1
                    if pushers_left == 0 or pull_pacer.stopped:
                        pull_pacer.stop("no jobs left after the pushers finished")
                        return
                await t.ack(lane, job)
            except RequestFailed as e:
                if slot.measured:
                    pull_rec.error(str(e), now_ns())
                if isinstance(e, ConnectionLost):
                    pull_pacer.stop(f"connection lost: {e}")
                    push_pacer.stop(f"connection lost: {e}")
                continue
            if slot.measured:
                pull_rec.record(slot.intended_ns, sent, now_ns())
            else:
                pull_rec.unmeasured += 1

    lanes = [pusher(i) for i in range(plan.lanes)] + [puller(i) for i in range(plan.lanes)]
    await _gather(lanes, start + int(plan.limit_s * 1e9))
    for name, p in (("pushers", push_pacer), ("pullers", pull_pacer)):
        if p.stopped:
            st.notes.append(f"mixed: {name} stopped early: {p.stopped}")


RUNNERS: dict[str, Callable[[Transport, Plan, RunState], Awaitable[None]]] = {
    "push": run_push,
    "pullack": run_pullack,
    "e2e": run_e2e,
    "mixed": run_mixed,
}
