"""What the state machine's jobs may be doing, judged only from what the server answered.

The server runs on real time (delays, backoff, stall detection), so the model does not
predict one state per job but the set of states the job may be in now (`states`), and
`ever`, every state it may have been in. An answer or an observation narrows the set;
time only moves a job inside it. Pure: no I/O; violations are raised as `Violation`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hopper.job import STATES
from hopper.soak.errors import Violation

LIVE = frozenset({"waiting", "waiting-children", "delayed", "active"})
MAX_STALLS = 3  # hopper's default; `hopper serve` has no flag for it


@dataclass
class MJob:
    id: str
    queue: str
    promised: bool  # the push must survive a SIGKILL (durable, or fsync always)
    max_attempts: int
    backoff: int
    priority: int
    unique_key: str | None
    custom_id: bool
    states: set[str] = field(default_factory=set)
    ever: set[str] = field(default_factory=set)
    attempts: int = 0
    stalls: int = 0
    # A lease the machine holds.
    token: str | None = None
    via: str | None = None
    lease_sent: float = 0.0
    lease_recv: float = 0.0
    # A lease given up (worker died, connection dropped, crash): no longer active by then.
    return_by: float | None = None
    acked: bool = False
    ack_recv: float = 0.0

    def set(self, states: Iterable[str]) -> None:
        self.states = set(states)
        self.ever |= self.states

    @property
    def held(self) -> bool:
        return self.token is not None

    def describe(self) -> str:
        return (
            f"job {self.id} (queue {self.queue}, may be {'/'.join(sorted(self.states))}, "
            f"attempts {self.attempts}, stalls {self.stalls}"
            f"{', acked' if self.acked else ''}{', durable push' if self.promised else ''})"
        )


@dataclass(frozen=True)
class PushExpectation:
    """What a push must answer: a new id, a given id, or either (the holder of its
    uniqueKey may be finishing right now)."""

    same: str | None
    may_be_new: bool


class Model:
    def __init__(
        self, *, always: bool, stall_s: float, slack_s: float, allowed: Counter[str] | None = None
    ) -> None:
        self.always = always
        self.stall_s = stall_s
        self.slack_s = slack_s
        self.jobs: dict[str, MJob] = {}
        # What a crash may take when the policy does not promise it: "lost_unpromised"
        # pushes, "acks_undone".
        self.allowed: Counter[str] = Counter() if allowed is None else allowed

    # ----- queries ---------------------------------------------------------------------

    def in_queue(self, queue: str) -> list[MJob]:
        return [j for j in self.jobs.values() if j.queue == queue]

    def held(self) -> list[MJob]:
        return sorted((j for j in self.jobs.values() if j.held), key=lambda j: j.id)

    def abandoned(self) -> list[MJob]:
        return sorted(
            (j for j in self.jobs.values() if j.return_by is not None), key=lambda j: j.id
        )

    def count_bounds(self, queue: str) -> dict[str, tuple[int, int]]:
        """Per state: (jobs surely in it, jobs possibly in it)."""
        jobs = self.in_queue(queue)
        return {
            s: (sum(j.states == {s} for j in jobs), sum(s in j.states for j in jobs))
            for s in STATES
        }

    # ----- pushes ------------------------------------------------------------------------

    def expect_push(
        self, queue: str, unique_key: str | None, job_id: str | None
    ) -> PushExpectation:
        if job_id is not None:
            # jobId is idempotent over every queue and state while the job exists.
            return PushExpectation(job_id, job_id not in self.jobs)
        if unique_key is None:
            return PushExpectation(None, True)
        holders = [
            j for j in self.in_queue(queue) if j.unique_key == unique_key and j.states & LIVE
        ]
        if not holders:
            return PushExpectation(None, True)
        # The live holder (at most one can be surely live; pick the newest possible one).
        holder = max(holders, key=lambda j: (j.states <= LIVE, j.id))
        return PushExpectation(holder.id, not holder.states <= LIVE)

    def check_push(self, exp: PushExpectation, got: str, what: str) -> bool:
        """True when `got` is a new job. Raises when the id contradicts the expectation."""
        if exp.same is not None and got == exp.same:
            return exp.same not in self.jobs
        if exp.same is not None and not exp.may_be_new:
            raise Violation(
                "ids-unique",
                f"{what} answered id {got}, but {exp.same} holds that key/jobId and is live",
            )
        if got in self.jobs:
            raise Violation("ids-unique", f"{what} answered id {got}, already used by another job")
        return True

    def add(self, job: MJob, delay: int) -> None:
        job.set({"waiting"} if delay == 0 else {"delayed", "waiting"})
        self.jobs[job.id] = job

    # ----- pulls ---------------------------------------------------------------------------

    def on_pulled(
        self, queue: str, body: dict[str, Any], token: str, via: str, sent: float, recv: float
    ) -> MJob:
        job_id = str(body.get("id"))
        j = self.jobs.get(job_id)
        if j is None or j.queue != queue:
            raise Violation(
                "state-consistent",
                f"a pull from {queue} returned {job_id}, which was never pushed to it "
                "(or was lost before)",
            )
        if "waiting" not in j.states:
            invariant = "no-double-completion" if j.acked else "state-consistent"
            raise Violation(invariant, f"a pull delivered {j.describe()}")
        sure = [o for o in self.in_queue(queue) if o.states == {"waiting"} and o is not j]
        if sure and max(o.priority for o in sure) > j.priority:
            top = max(sure, key=lambda o: o.priority)
            raise Violation(
                "state-consistent",
                f"pull order: got {j.id} (priority {j.priority}) while {top.id} (priority "
                f"{top.priority}) was waiting",
            )
        attempts, stalls = int(body["attempts"]), int(body["stalls"])
        stall_range = (j.stalls, j.stalls + 1) if j.return_by is not None else (j.stalls,) * 2
        if attempts != j.attempts or not stall_range[0] <= stalls <= stall_range[1]:
            raise Violation(
                "state-consistent",
                f"pulled {j.id} with attempts {attempts}, stalls {stalls}; expected attempts "
                f"{j.attempts}, stalls {stall_range[0]}..{stall_range[1]}",
            )
        j.stalls = stalls
        j.set({"active"})
        j.token, j.via, j.lease_sent, j.lease_recv, j.return_by = token, via, sent, recv, None
        return j

    def on_pull_none(self, queue: str, via: str) -> None:
        sure = [j for j in self.in_queue(queue) if j.states == {"waiting"}]
        if sure:
            raise Violation(
                "state-consistent",
                f"a pull ({via}) from {queue} returned no job while {sure[0].describe()} "
                "was waiting",
            )

    # ----- leases ------------------------------------------------------------------------

    def lease_fresh(self, j: MJob, now: float) -> bool:
        """Safe to ack: well inside the stall interval (else the lease may stall first)."""
        return now < j.lease_sent + self.stall_s * 0.5

    def abandon(self, j: MJob, return_by: float) -> None:
        """The lease is given up: the job may still be active until `return_by`, then it
        must be waiting again (or failed, on its last allowed stall)."""
        j.token = j.via = None
        j.return_by = return_by if j.return_by is None else max(j.return_by, return_by)
        end = {"waiting", "failed"} if j.stalls + 1 >= MAX_STALLS else {"waiting"}
        j.set({"active"} | end)

    def lease_deadline(self, j: MJob) -> float:
        """When the server must have stalled the lease: its deadline (at most the pull
        answer + the interval) plus slack for the timer thread."""
        return j.lease_recv + self.stall_s + self.slack_s

    def expire_leases(self, now: float) -> list[MJob]:
        stale = [j for j in self.held() if not self.lease_fresh(j, now)]
        for j in stale:
            self.abandon(j, self.lease_deadline(j))
        return stale

    def on_ack(self, j: MJob, ok: bool, recv: float) -> None:
        if ok:
            j.token = j.via = None
            j.set({"completed"})
            j.acked, j.ack_recv = True, recv
            return
        self._refused(j, "ack", recv)

    def on_fail(self, j: MJob, ok: bool, recv: float) -> None:
        if not ok:
            self._refused(j, "fail", recv)
            return
        j.token = j.via = None
        j.attempts += 1
        if j.attempts >= j.max_attempts:
            j.set({"failed"})
        elif j.backoff == 0:
            j.set({"waiting"})
        else:
            j.set({"delayed", "waiting"})

    def _refused(self, j: MJob, what: str, recv: float) -> None:
        if recv < j.lease_sent + self.stall_s:
            raise Violation(
                "state-consistent",
                f"{what} of {j.describe()} with its token was refused "
                f"{recv - j.lease_sent:.3f} s after the pull, inside the stall interval",
            )
        self.abandon(j, self.lease_deadline(j))  # it stalled first: fate unknown

    # ----- observations --------------------------------------------------------------------

    def check_observed(self, j: MJob, got: dict[str, Any] | None, sent: float) -> None:
        """A GET of `j` (sent at `sent`) against what the model allows."""
        if got is None:
            raise Violation("no-lost-push", f"GET answered 404 for {j.describe()}")
        state = str(got.get("state"))
        if j.return_by is not None and sent > j.return_by and state == "active":
            raise Violation(
                "stalled-jobs-return",
                f"{j.describe()} is still active {sent - j.return_by + self.slack_s:.1f} s "
                "after its lease was given up and should have stalled",
            )
        if state not in j.states:
            invariant = "no-double-completion" if j.acked else "state-consistent"
            raise Violation(invariant, f"GET shows state {state!r} for {j.describe()}")
        if int(got.get("attempts", j.attempts)) < j.attempts:
            raise Violation(
                "state-consistent",
                f"GET shows attempts {got.get('attempts')} for {j.describe()}",
            )

    def adopt(self, j: MJob, got: dict[str, Any], now: float) -> None:
        """After a checked observation of a given-up job, or after a crash: the job is
        now what the server says (time may still move delayed → waiting)."""
        state = str(got["state"])
        j.attempts = int(got.get("attempts", j.attempts))
        j.stalls = int(got.get("stalls", j.stalls))
        j.return_by = None
        if state == "active":
            # A lease that survived (a crash): it stalls at its old deadline at the latest.
            self.abandon(j, now + self.stall_s + self.slack_s)
        elif state == "delayed":
            j.set({"delayed", "waiting"})
        else:
            j.set({state})
        if j.acked and state != "completed":
            j.acked = False
            self.allowed["acks_undone"] += 1

    # ----- crash -----------------------------------------------------------------------

    def before_kill(self, now: float) -> None:
        for j in self.held():
            self.abandon(j, self.lease_deadline(j))

    def recover(self, j: MJob, got: dict[str, Any] | None, ready: float) -> None:
        """After a SIGKILL and restart: what the policy promised must be there; the job
        then becomes what the server says."""
        if got is None:
            if j.promised:
                raise Violation(
                    "no-lost-push", f"{j.describe()} is gone after a SIGKILL and restart"
                )
            del self.jobs[j.id]
            self.allowed["lost_unpromised"] += 1
            return
        state = str(got.get("state"))
        if self.always:
            allowed = set(j.states) | ({"waiting"} if "active" in j.states else set())
        else:
            allowed = set(j.ever) | {"waiting"}
        if state not in allowed:
            invariant = "no-double-completion" if j.acked else "no-lost-push"
            raise Violation(
                invariant,
                f"after a SIGKILL and restart {j.describe()} is {state!r} "
                f"(allowed under this fsync policy: {'/'.join(sorted(allowed))})",
            )
        if self.always and int(got.get("attempts", 0)) < j.attempts:
            raise Violation(
                "no-lost-push",
                f"after a SIGKILL and restart {j.describe()} has attempts "
                f"{got.get('attempts')}: an answered fail was lost",
            )
        self.adopt(j, got, ready)
