"""The engine against a small pure-Python reference model, driven by hypothesis with the
engine's manual clock: every rule step is checked against the model's prediction, and
invariants (nothing lost, no double lease, order, counts == lists) hold after each step.

Beyond single jobs it covers flows (a parent and its children across queues, the
children's failure policies, children values, moving an active parent back to
waiting-children, detaching a child), a dead-letter queue (`DLQ_QUEUE`: a bounded failed
set and automatic retries on the manual clock) and group settings (paused groups and group
concurrency limits skipped by pulls, in ready order otherwise).

The engine is persistent (fsync "always"), and a `crash_and_recover` rule copies its data
directory as it is on disk (what a SIGKILL would leave once the writer caught up), starts
a new engine on the copy, and the model checks that everything survived exactly."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import hopper
import hypothesis.strategies as st
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

QUEUES = ("a", "b")
# Its own queue, so automatic retries meet no unique key (a retried job taking its key
# back is covered by the Rust tests): jobs of one attempt, no key, no group.
DLQ_QUEUE = "d"
ALL_QUEUES = (*QUEUES, DLQ_QUEUE)
GROUPS = ("g1", "g2")
POLICIES = ("wait", "fail_parent", "continue_parent", "ignore", "remove")
FINISHED = ("completed", "failed")
# The engine's sweep of finished jobs (retention age, dead-letter age and retries) runs
# at most this often (engine.rs RETENTION_SWEEP_MS): at the first tick this long after
# the previous sweep, or after the engine was opened.
SWEEP_MS = 1000
DEFAULT_DLQ = {
    "auto_retry": False,
    "auto_retry_interval_ms": 3_600_000,
    "max_auto_retries": 3,
    "max_entries": 10_000,
}
STATES = ("waiting", "waiting-children", "delayed", "active", "completed", "failed")
MAX_BACKOFF = 3_600_000


@dataclass
class MJob:
    id: str
    queue: str
    priority: int
    lifo: bool
    max_attempts: int
    backoff: int
    unique_key: str | None
    state: str = "waiting"
    seq: int = 0
    run_at: int = 0
    attempts: int = 0
    token: str | None = None
    depends_on: list[str] = field(default_factory=list)
    pending: int = 0
    dependents: list[str] = field(default_factory=list)
    group: str | None = None
    finished_at: int = 0
    dlq_retries: int = 0
    # Flows: a child's parent (None once detached) and failure policy; a parent's
    # children and what they left it (keyed queue:id).
    parent: str | None = None
    policy: str = "wait"
    flow_child: bool = False
    flow_parent: bool = False
    children: list[str] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)
    failed_values: dict[str, str] = field(default_factory=dict)
    ignored_values: dict[str, str] = field(default_factory=dict)


class EngineModel(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.now = 1_700_000_000_000
        self.tmp = Path(tempfile.mkdtemp(prefix="hopper-model-"))
        self.generation = 0
        self.engine = self._open()
        self.jobs: dict[str, MJob] = {}
        self.seq = 0
        self.paused: set[str] = set()
        self.delayed_order: list[str] = []  # ids in the order they became delayed
        self.next_sweep = self.now + SWEEP_MS
        self.dlq = dict(DEFAULT_DLQ)  # DLQ_QUEUE's dead-letter settings
        self.paused_groups: set[tuple[str, str]] = set()
        self.group_limits: dict[tuple[str, str], int] = {}
        self.flows = 0
        self.acks = 0

    def teardown(self) -> None:
        self.engine.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _open(self) -> hopper.Engine:
        return hopper.Engine(
            clock_ms=self.now,
            stall_interval_ms=10**9,
            data_dir=self.tmp / str(self.generation),
            fsync="always",
        )

    # ----- model helpers ------------------------------------------------------------

    def _enqueue(self, j: MJob) -> None:
        self.seq += 1
        j.seq = -self.seq if j.lifo else self.seq
        j.state = "waiting"

    def _runnable(self, j: MJob) -> None:
        if j.run_at > self.now:
            j.state = "delayed"
            self.delayed_order.append(j.id)
        else:
            self._enqueue(j)

    def _blocked_on(self, j: MJob) -> list[MJob]:
        """Dependents still waiting for `j`: only they fail with it (one that already
        ran is not affected by what happens to `j` later, e.g. a retry)."""
        return [
            self.jobs[d]
            for d in j.dependents
            if d in self.jobs
            and self.jobs[d].state == "waiting-children"
            and j.id in self.jobs[d].depends_on
        ]

    def _fail_for_good(self, j: MJob, error: str) -> None:
        work = [(j, error)]
        while work:
            cur, err = work.pop()
            if cur.id not in self.jobs or cur.state in FINISHED:
                continue
            cur.state = "failed"
            cur.token = None
            cur.finished_at = self.now
            for d in self._blocked_on(cur):
                if cur.parent == d.id:  # a flow child acts on its parent by its policy
                    parent_error = self._child_failed(d, cur, err)
                    if parent_error is not None:
                        work.append((d, parent_error))
                    continue
                work.append((d, f"Dependency {cur.id} failed"))
        self._trim_failed()

    def _child_failed(self, p: MJob, child: MJob, error: str) -> str | None:
        key = f"{child.queue}:{child.id}"
        event(f"flow child failed: {child.policy}")
        if child.policy == "fail_parent":
            return f"Child job {child.id} failed: {error}"
        if child.policy == "continue_parent":
            p.failed_values[key] = error
            p.depends_on = []
            p.pending = 0
            self._runnable(p)
        elif child.policy in ("ignore", "remove"):
            if child.policy == "ignore":
                p.ignored_values[key] = error
            self._drop_dependency(p, child.id)
        return None

    def _unfinished(self, j: MJob) -> list[MJob]:
        return [
            self.jobs[d]
            for d in j.depends_on
            if d in self.jobs and self.jobs[d].state != "completed"
        ]

    def _drop_dependency(self, p: MJob, dep: str) -> None:
        p.depends_on = [d for d in p.depends_on if d != dep]
        p.pending = len(self._unfinished(p))
        if p.pending == 0 and p.state == "waiting-children":
            self._runnable(p)

    def _forget(self, j: MJob) -> None:
        """`j` is gone from the engine: unlinked from what it waited for."""
        del self.jobs[j.id]
        for dep in j.depends_on:
            if dep in self.jobs and j.id in self.jobs[dep].dependents:
                self.jobs[dep].dependents.remove(j.id)

    def _trim_failed(self) -> None:
        """DLQ_QUEUE keeps its newest `max_entries` failed jobs. Jobs that failed in the
        same millisecond are ordered by the engine's internal slot, which the model
        cannot know: when the cut falls inside such a tie, the engine's choice (which of
        the tied jobs are gone) is read and checked only for its size."""
        failed = sorted(
            (j for j in self._in("failed") if j.queue == DLQ_QUEUE), key=lambda j: j.finished_at
        )
        excess = len(failed) - self.dlq["max_entries"]
        if excess <= 0:
            return
        cut = failed[excess - 1].finished_at
        older = [j for j in failed if j.finished_at < cut]
        tied = [j for j in failed if j.finished_at == cut]
        gone = [j for j in tied if self.engine.get(j.id) is None]
        assert len(gone) == excess - len(older), "oldest failed jobs dropped first"
        event("dead-letter set trimmed" + (" (tie)" if gone else ""))
        for j in older + gone:
            self._forget(j)

    def _failed_order(self) -> list[str]:
        """DLQ_QUEUE's failed jobs in the engine's order (finish time, then internal slot
        for ties, which the model cannot know: read from the listing, newest first)."""
        listed, _ = self.engine.list_jobs(DLQ_QUEUE, "failed", 0, 999)
        return [x["id"] for x in reversed(listed)]

    def _auto_retry(self, order: list[str]) -> None:
        """The dead-letter sweep: failed jobs due for an automatic retry go back to
        waiting, in failed-set order."""
        cfg = self.dlq
        if not cfg["auto_retry"]:
            return
        for i in order:
            j = self.jobs.get(i)
            if j is None or j.state != "failed" or j.dlq_retries >= cfg["max_auto_retries"]:
                continue
            if j.finished_at + cfg["auto_retry_interval_ms"] * 2**j.dlq_retries <= self.now:
                self._retry(j)
                j.dlq_retries += 1
                event("automatic retry")

    def _retry(self, j: MJob) -> None:
        j.attempts = 0
        j.dlq_retries = 0
        j.run_at = self.now
        self._enqueue(j)

    def _settle_tie(self, tied: list[MJob]) -> None:
        """Jobs due in the same millisecond become waiting in the engine's timer order:
        the timer wheel's slot order, which cascading from a coarser level and the
        re-arming of timers on recovery make differ from the order they were delayed in.
        The model cannot know it: it takes the order (among the tied jobs only) that
        makes its ready lists match the engine's."""
        if len(tied) < 2:
            return
        queues = {j.queue for j in tied}
        engine_order = {
            q: [x["id"] for x in self.engine.list_jobs(q, "waiting", 0, 999)[0]] for q in queues
        }
        seqs = sorted(abs(j.seq) for j in tied)
        for perm in itertools.islice(itertools.permutations(tied), 5040):
            for j, seq in zip(perm, seqs, strict=True):
                j.seq = -seq if j.lifo else seq
            if all([j.id for j in self._ready(q)] == engine_order[q] for q in queues):
                return
        event("delayed jobs due together: no order matches")

    def _group_open(self, j: MJob) -> bool:
        if j.group is None:
            return True
        key = (j.queue, j.group)
        if key in self.paused_groups:
            return False
        limit = self.group_limits.get(key)
        active = sum(1 for x in self._in("active") if x.queue == j.queue and x.group == j.group)
        return limit is None or active < limit

    def _ready(self, queue: str) -> list[MJob]:
        ready = [j for j in self.jobs.values() if j.queue == queue and j.state == "waiting"]
        return sorted(ready, key=lambda j: (-j.priority, j.seq))

    def _live_key(self, queue: str, key: str) -> MJob | None:
        for j in self.jobs.values():
            if j.queue == queue and j.unique_key == key and j.state not in ("completed", "failed"):
                return j
        return None

    def _in(self, state: str) -> list[MJob]:
        return [j for j in self.jobs.values() if j.state == state]

    # ----- rules --------------------------------------------------------------------

    @rule(
        queue=st.sampled_from(QUEUES),
        priority=st.integers(-2, 2),
        delay=st.sampled_from([0, 0, 0, 30, 100]),
        lifo=st.booleans(),
        max_attempts=st.integers(1, 3),
        backoff=st.sampled_from([0, 20, 50]),
        unique_key=st.sampled_from([None, None, "k1", "k2"]),
        group=st.sampled_from([None, None, *GROUPS]),
    )
    def push(self, queue, priority, delay, lifo, max_attempts, backoff, unique_key, group):
        jid = self.engine.push(
            queue,
            {"n": len(self.jobs)},
            priority=priority,
            delay=delay,
            lifo=lifo,
            max_attempts=max_attempts,
            backoff=backoff,
            unique_key=unique_key,
            group_id=group,
        )
        holder = self._live_key(queue, unique_key) if unique_key else None
        if holder is not None:
            assert jid == holder.id
            return
        assert jid not in self.jobs
        j = MJob(jid, queue, priority, lifo, max_attempts, backoff, unique_key, group=group)
        j.run_at = self.now + delay
        self.jobs[jid] = j
        self._runnable(j)

    @precondition(lambda self: any(j.state != "failed" for j in self.jobs.values()))
    @rule(data=st.data(), delay=st.sampled_from([0, 50]))
    def push_dependent(self, data, delay):
        candidates = sorted(self.jobs)
        deps = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=2, unique=True))
        jid = self.engine.push("a", {"deps": deps}, depends_on=deps, delay=delay)
        j = MJob(jid, "a", 0, False, 3, 1000, None, depends_on=list(deps))
        j.run_at = self.now + delay
        self.jobs[jid] = j
        states = [self.jobs[d].state for d in deps]
        for d in deps:
            if self.jobs[d].state not in ("completed", "failed"):
                self.jobs[d].dependents.append(jid)
        j.pending = sum(s not in ("completed", "failed") for s in states)
        if "failed" in states:
            failed = next(d for d in deps if self.jobs[d].state == "failed")
            self._fail_for_good(j, f"Dependency {failed} failed")
        elif j.pending:
            j.state = "waiting-children"
        else:
            self._runnable(j)

    @rule(queue=st.sampled_from(ALL_QUEUES))
    def pull(self, queue):
        self._pull(queue)

    @rule(queue=st.sampled_from(ALL_QUEUES), ok=st.booleans())
    def work(self, queue, ok):
        """A worker's whole turn, pull then ack or fail: lets children, parents and
        dead-letter jobs finish within a run's few steps."""
        j = self._pull(queue)
        if j is None:
            return
        if ok:
            self._ack(j)
        else:
            self._fail(j)

    def _pull(self, queue: str) -> MJob | None:
        got = self.engine.pull(queue)
        # Never a job of a paused group or of a group at its concurrency limit; the
        # first eligible job in ready order otherwise.
        ready = (
            [] if queue in self.paused else [j for j in self._ready(queue) if self._group_open(j)]
        )
        if not ready:
            assert got is None
            return None
        assert got is not None, f"expected {ready[0].id}"
        assert got.id == ready[0].id, "priority/FIFO/LIFO order"
        if ready[0] is not self._ready(queue)[0]:
            event("pull skipped a blocked group")
        assert all(j.token != got.token for j in self.jobs.values())
        ready[0].state = "active"
        ready[0].token = got.token
        return ready[0]

    @precondition(lambda self: bool(self._in("active")))
    @rule(data=st.data(), wrong_token=st.booleans())
    def ack(self, data, wrong_token):
        j = data.draw(st.sampled_from(sorted(self._in("active"), key=lambda j: j.id)))
        if wrong_token:
            try:
                self.engine.ack(j.id, "00000000-0000-7000-8000-000000000000")
            except hopper.LockError:
                return
            raise AssertionError("ack with a wrong token was accepted")
        self._ack(j)

    def _ack(self, j: MJob) -> None:
        self.acks += 1
        result = {"ok": self.acks}
        self.engine.ack(j.id, j.token, result)
        j.state, j.token = "completed", None
        j.finished_at = self.now
        parent = self.jobs.get(j.parent) if j.parent else None
        if parent is not None and parent.state not in FINISHED:
            event("child result handed up")
            parent.values[f"{j.queue}:{j.id}"] = result  # the parent keeps what it returned
        for d in j.dependents:
            dj = self.jobs.get(d)
            if dj is not None and dj.state == "waiting-children":
                # Recounted: a dependency retried after completing completes twice.
                dj.pending = sum(
                    1 for x in dj.depends_on if x in self.jobs and self.jobs[x].state != "completed"
                )
                if dj.pending == 0:
                    self._runnable(dj)

    @precondition(lambda self: bool(self._in("active")))
    @rule(data=st.data())
    def fail(self, data):
        self._fail(data.draw(st.sampled_from(sorted(self._in("active"), key=lambda j: j.id))))

    def _fail(self, j: MJob) -> None:
        delay = self.engine.fail(j.id, j.token, "boom")
        j.attempts += 1
        j.token = None
        if j.attempts >= j.max_attempts:
            assert delay is None
            self._fail_for_good(j, "boom")
        else:
            expected = min(j.backoff * 2 ** (j.attempts - 1), MAX_BACKOFF)
            assert delay == expected
            j.run_at = self.now + expected
            self._runnable(j)

    @rule(ms=st.sampled_from([1, 10, 29, 50, 200]))
    def advance(self, ms):
        self.now += ms
        sweep = self.now >= self.next_sweep
        order = self._failed_order() if sweep else []
        self.engine.advance_clock(ms)
        self.delayed_order = [
            i for i in self.delayed_order if i in self.jobs and self.jobs[i].state == "delayed"
        ]
        due = [i for i in self.delayed_order if self.jobs[i].run_at <= self.now]
        due.sort(key=lambda i: self.jobs[i].run_at)  # stable: same deadline keeps order
        for i in due:
            self._enqueue(self.jobs[i])
        for run_at in sorted({self.jobs[i].run_at for i in due}):
            self._settle_tie([self.jobs[i] for i in due if self.jobs[i].run_at == run_at])
        self.delayed_order = [i for i in self.delayed_order if self.jobs[i].state == "delayed"]
        if sweep:  # after the timers of the tick
            self.next_sweep = self.now + SWEEP_MS
            self._auto_retry(order)

    @rule()
    def advance_to_sweep(self):
        """Time moves to the engine's next sweep of finished jobs (automatic retries)."""
        self.advance(self.next_sweep - self.now)

    @precondition(lambda self: bool(self._in("delayed")))
    @rule(data=st.data())
    def promote(self, data):
        j = data.draw(st.sampled_from(sorted(self._in("delayed"), key=lambda j: j.id)))
        self.engine.promote(j.id)
        j.run_at = self.now
        self._enqueue(j)

    @precondition(lambda self: bool(self._in("active")))
    @rule(data=st.data(), delay=st.sampled_from([0, 30, 100]), wrong_token=st.booleans())
    def move_to_delayed(self, data, delay, wrong_token):
        j = data.draw(st.sampled_from(sorted(self._in("active"), key=lambda j: j.id)))
        if wrong_token:
            try:
                self.engine.move_to_delayed(j.id, "00000000-0000-7000-8000-000000000000", delay)
            except hopper.LockError:
                return
            raise AssertionError("move to delayed with a wrong token was accepted")
        self.engine.move_to_delayed(j.id, j.token, delay)
        # The lease ends and the attempt is not counted.
        j.token = None
        j.run_at = self.now + delay
        self._runnable(j)

    @precondition(lambda self: bool(self.jobs))
    @rule(data=st.data(), delay=st.sampled_from([0, 30, 100]))
    def change_delay(self, data, delay):
        j = data.draw(st.sampled_from(sorted(self.jobs.values(), key=lambda j: j.id)))
        if j.state not in ("waiting", "delayed", "active"):
            try:
                self.engine.change_delay(j.id, delay)
            except hopper.InvalidStateError:
                return
            raise AssertionError(f"changing the delay of a {j.state} job was accepted")
        self.engine.change_delay(j.id, delay, j.token)
        run_at = self.now + delay
        if j.state == "active":  # as move_to_delayed
            j.token = None
            j.run_at = run_at
            self._runnable(j)
        elif j.state == "delayed":
            j.run_at = run_at
            if run_at > self.now:  # re-timed: due after the jobs delayed before it
                self.delayed_order.remove(j.id)
                self.delayed_order.append(j.id)
            else:
                self._enqueue(j)  # promoted
        elif run_at > self.now:  # waiting -> delayed; a delay of 0 keeps it in place
            j.run_at = run_at
            self._runnable(j)

    @precondition(lambda self: bool(self.jobs))
    @rule(data=st.data())
    def discard_job(self, data):
        j = data.draw(st.sampled_from(sorted(self.jobs.values(), key=lambda j: j.id)))
        if j.state in ("completed", "failed"):
            try:
                self.engine.discard_job(j.id)
            except hopper.InvalidStateError:
                return
            raise AssertionError(f"discarding a {j.state} job was accepted")
        self.engine.discard_job(j.id, j.token)
        # Failed for good whatever attempts it had left; jobs waiting on it fail too.
        self._fail_for_good(j, "Job discarded")
        if j.id in self.jobs:  # not dropped from a bounded dead-letter set
            assert self.engine.get(j.id)["error"] == "Job discarded"

    @rule(queue=st.sampled_from(QUEUES), limit=st.integers(0, 3))
    def promote_first(self, queue, limit):
        delayed = [j for j in self._in("delayed") if j.queue == queue]
        if not self.engine.has_queue(queue):
            assert not delayed
            try:
                self.engine.promote_first(queue, limit)
            except hopper.NotFoundError:
                return
            raise AssertionError("promote_first on an unknown queue was accepted")
        # Soonest due first. Among jobs due at the same time the engine's order is its
        # index's (by slot), which the model cannot know: take it from the listing.
        listed, _ = self.engine.list_jobs(queue, "delayed", 0, 999)
        position = {x["id"]: i for i, x in enumerate(listed)}
        delayed.sort(key=lambda j: (j.run_at, position[j.id]))
        assert self.engine.promote_first(queue, limit) == min(limit, len(delayed))
        for j in delayed[:limit]:
            j.run_at = self.now
            self._enqueue(j)

    @precondition(lambda self: bool(self._in("failed")))
    @rule(data=st.data())
    def retry(self, data):
        j = data.draw(st.sampled_from(sorted(self._in("failed"), key=lambda j: j.id)))
        if j.unique_key and self._live_key(j.queue, j.unique_key):
            return  # key reuse after retry is covered by the Rust tests
        self.engine.retry(j.id)
        self._retry(j)

    @precondition(lambda self: bool(self.jobs))
    @rule(data=st.data())
    def remove(self, data):
        j = data.draw(st.sampled_from(sorted(self.jobs.values(), key=lambda j: j.id)))
        if j.state == "active":
            try:
                self.engine.remove(j.id)
            except hopper.InvalidStateError:
                return
            raise AssertionError("removing an active job was accepted")
        self.engine.remove(j.id)
        if j.state not in FINISHED:
            for blocked in self._blocked_on(j):
                self._fail_for_good(blocked, f"Dependency {j.id} was removed")
        self._forget(j)
        assert self.engine.get(j.id) is None

    @rule(queue=st.sampled_from(QUEUES), pause=st.booleans())
    def toggle_pause(self, queue, pause):
        if pause:
            self.engine.pause(queue)
            self.paused.add(queue)
        else:
            self.engine.resume(queue)
            self.paused.discard(queue)

    @precondition(lambda self: bool(self._in("completed")))
    @rule(data=st.data())
    def retry_completed(self, data):
        """A completed job runs again: a flow parent that ran may find a child pending."""
        j = data.draw(st.sampled_from(sorted(self._in("completed"), key=lambda j: j.id)))
        if j.unique_key and self._live_key(j.queue, j.unique_key):
            return
        self.engine.retry(j.id)
        self._retry(j)

    # ----- flows --------------------------------------------------------------------

    @rule(data=st.data())
    def push_flow(self, data):
        """A parent and 1-3 children on one or two queues, each child with a random
        failure policy and one or two attempts (no backoff)."""
        self.flows += 1
        pid = f"flow{self.flows}"
        children = [
            hopper.FlowJob(
                data.draw(st.sampled_from(QUEUES)),
                f"{pid}-c{i}",
                {"i": i},
                parent=pid,
                on_failure=data.draw(st.sampled_from(POLICIES)),
                options={"max_attempts": data.draw(st.integers(1, 2)), "backoff": 0},
            )
            for i in range(data.draw(st.integers(1, 3)))
        ]
        parent = hopper.FlowJob(
            data.draw(st.sampled_from(QUEUES)), pid, {}, children=tuple(c.id for c in children)
        )
        ids = self.engine.push_flow([*children, parent])
        assert ids == [c.id for c in children] + [pid]
        # Children are created first, in the order given, then the parent.
        for c in children:
            attempts = c.options["max_attempts"] if c.options else 3
            j = MJob(c.id, c.queue, 0, False, attempts, 0, None, parent=pid, policy=c.on_failure)
            j.flow_child = True
            j.dependents.append(pid)
            j.run_at = self.now
            self.jobs[j.id] = j
            self._enqueue(j)
        p = MJob(pid, parent.queue, 0, False, 3, 1000, None, depends_on=list(parent.children))
        p.flow_parent = True
        p.children = list(parent.children)
        p.pending = len(children)
        p.run_at = self.now
        p.state = "waiting-children"
        self.jobs[pid] = p

    @precondition(lambda self: any(j.flow_parent for j in self.jobs.values()))
    @rule(data=st.data())
    def children_values(self, data):
        parents = sorted(j.id for j in self.jobs.values() if j.flow_parent)
        p = self.jobs[data.draw(st.sampled_from(parents))]
        got = self.engine.children_values(p.id)
        assert got == hopper.ChildrenValues(p.values, p.failed_values, p.ignored_values)

    @precondition(lambda self: bool(self._in("active")))
    @rule(data=st.data(), wrong_token=st.booleans())
    def move_to_waiting_children(self, data, wrong_token):
        active = sorted(self._in("active"), key=lambda j: (not self._unfinished(j), j.id))
        # Mostly a job with dependencies still pending (a parent that finds a child
        # pending): that is the move; otherwise it stays active.
        j = active[data.draw(st.integers(0, len(active) - 1)) if data.draw(st.booleans()) else 0]
        if wrong_token:
            try:
                self.engine.move_to_waiting_children(j.id, "00000000-0000-7000-8000-000000000000")
            except hopper.LockError:
                return
            raise AssertionError("move to waiting-children with a wrong token was accepted")
        pending = self._unfinished(j)
        assert self.engine.move_to_waiting_children(j.id, j.token) == bool(pending)
        event(f"move to waiting-children: {bool(pending)}")
        if not pending:
            return
        for dep in pending:  # each pending dependency releases it when done
            if j.id not in dep.dependents:
                dep.dependents.append(j.id)
        j.state, j.token, j.pending = "waiting-children", None, len(pending)

    @precondition(lambda self: any(j.flow_child for j in self.jobs.values()))
    @rule(data=st.data())
    def remove_child_dependency(self, data):
        children = sorted(j.id for j in self.jobs.values() if j.flow_child)
        j = self.jobs[data.draw(st.sampled_from(children))]
        if j.parent is None:  # already detached
            try:
                self.engine.remove_child_dependency(j.id)
            except hopper.InvalidInputError:
                return
            raise AssertionError("detaching a job without a parent was accepted")
        got = self.engine.remove_child_dependency(j.id)
        p = self.jobs.get(j.parent)
        waits = p is not None and p.state == "waiting-children" and j.id in p.depends_on
        if p is None or not waits or j.state in FINISHED:
            assert got is False
            return
        assert got is True
        event("child detached")
        j.parent = None
        j.dependents = [d for d in j.dependents if d != p.id]
        p.children.remove(j.id)
        self._drop_dependency(p, j.id)

    # ----- dead-letter queue --------------------------------------------------------

    @rule()
    def push_dlq(self):
        jid = self.engine.push(DLQ_QUEUE, {"n": len(self.jobs)}, max_attempts=1, backoff=0)
        j = MJob(jid, DLQ_QUEUE, 0, False, 1, 0, None)
        j.run_at = self.now
        self.jobs[jid] = j
        self._enqueue(j)

    @rule(
        max_entries=st.sampled_from([None, 1, 2, 3]),
        auto_retry=st.sampled_from([None, True, False]),
        interval=st.sampled_from([None, 100, 300, 1500]),
        max_retries=st.sampled_from([None, 1, 2]),
    )
    def set_dlq_config(self, max_entries, auto_retry, interval, max_retries):
        """Applied at once: the failed set trimmed, due automatic retries made."""
        order = self._failed_order()
        got = self.engine.set_dlq_config(
            DLQ_QUEUE,
            max_entries=max_entries,
            auto_retry=auto_retry,
            auto_retry_interval_ms=interval,
            max_auto_retries=max_retries,
        )
        for key, value in (
            ("max_entries", max_entries),
            ("auto_retry", auto_retry),
            ("auto_retry_interval_ms", interval),
            ("max_auto_retries", max_retries),
        ):
            if value is not None:
                self.dlq[key] = value
            assert getattr(got, key) == self.dlq[key], key
        assert self.engine.dlq_config(DLQ_QUEUE) == got
        self._trim_failed()
        self._auto_retry(order)

    # ----- groups -------------------------------------------------------------------

    @rule(queue=st.sampled_from(QUEUES), group=st.sampled_from(GROUPS), pause=st.booleans())
    def toggle_group_pause(self, queue, group, pause):
        key = (queue, group)
        if pause:
            assert self.engine.pause_group(queue, group) == (key not in self.paused_groups)
            self.paused_groups.add(key)
        else:
            assert self.engine.resume_group(queue, group) == (key in self.paused_groups)
            self.paused_groups.discard(key)

    @rule(
        queue=st.sampled_from(QUEUES),
        group=st.sampled_from(GROUPS),
        limit=st.sampled_from([None, 1, 2]),
    )
    def group_concurrency(self, queue, group, limit):
        key = (queue, group)
        if limit is None:
            had = self.engine.remove_group_concurrency(queue, group)
            assert had == (key in self.group_limits)
            self.group_limits.pop(key, None)
        else:
            self.engine.set_group_concurrency(queue, group, limit)
            self.group_limits[key] = limit
        assert self.engine.group_concurrency(queue, group) == self.group_limits.get(key)

    @rule()
    def crash_and_recover(self):
        """The disk as a SIGKILL would leave it once the log writer has caught up: a new
        engine recovers from a copy of the directory, and the model checks that every
        job, state, order and lease token came back. (Under `always` every push, ack,
        fail, retry, promote, remove and pause is synced before it returns; leases and
        timer moves are not awaited, and losing them is exercised by the SIGKILL test in
        tests/server/test_crash.py.)"""
        info = self.engine.storage_info()
        assert info is not None
        self.engine._core.wait_durable(info["appended_lsn"])
        crashed = self.tmp / str(self.generation)
        self.generation += 1
        shutil.copytree(crashed, self.tmp / str(self.generation), ignore=_lock_file)
        self.engine.close()
        self.engine = self._open()
        self.next_sweep = self.now + SWEEP_MS
        report = self.engine.recovery_report()
        assert report is not None and report["orphans"] == 0, report

    # ----- invariants ---------------------------------------------------------------

    @invariant()
    def counts_match_model_and_lists(self):
        for q in ALL_QUEUES:
            counts = self.engine.counts(q)
            for s in STATES:
                expected = sum(1 for j in self.jobs.values() if j.queue == q and j.state == s)
                assert counts[s] == expected, (q, s, counts[s], expected)
                listed, total = self.engine.list_jobs(q, s, 0, 999)
                assert total == counts[s] == len(listed)
                assert {x["id"] for x in listed} == {
                    j.id for j in self.jobs.values() if j.queue == q and j.state == s
                }

    @invariant()
    def ready_order_matches(self):
        for q in ALL_QUEUES:
            listed, _ = self.engine.list_jobs(q, "waiting", 0, 999)
            assert [x["id"] for x in listed] == [j.id for j in self._ready(q)]

    @invariant()
    def every_job_present_with_its_state(self):
        for j in self.jobs.values():
            got = self.engine.get(j.id)
            assert got is not None, f"job {j.id} lost"
            assert got["state"] == j.state
            assert got["attempts"] == j.attempts

    @invariant()
    def dead_letter_set_bounded(self):
        assert self.engine.counts(DLQ_QUEUE)["failed"] <= self.dlq["max_entries"]

    @invariant()
    def settings_match(self):
        assert self.engine.dlq_config(DLQ_QUEUE).max_entries == self.dlq["max_entries"]
        for q in QUEUES:
            for g in GROUPS:
                assert self.engine.is_group_paused(q, g) == ((q, g) in self.paused_groups)
                assert self.engine.group_concurrency(q, g) == self.group_limits.get((q, g))


def _lock_file(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "LOCK"]


EngineModel.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineModel = EngineModel.TestCase
