"""`hopper.Engine`: the Rust engine in-process, behind a typed Python API.

Calls take microseconds and run on the caller's thread; a blocking `pull(timeout=...)`
releases the GIL while it waits. Asyncio code awaits work and events through the
engine's notification fd (`pull_async`, `subscribe`), never by polling.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, ParamSpec, TypedDict, TypeVar

import orjson

from hopper._engine import Core, EngineOptions, InvalidInputError
from hopper.job import Job, State
from hopper.notify import EventListener, LoopWatcher
from hopper.push_options import FIELDS as PUSH_FIELDS
from hopper.push_options import PushOptions, push_body

if TYPE_CHECKING:
    from typing_extensions import Unpack

P = ParamSpec("P")
R = TypeVar("R")
SearchType = Literal["job", "queue", "payload"]
FsyncPolicy = Literal["always", "interval", "never"]
LogLevel = Literal["info", "warn", "error"]


class LogEntry(NamedTuple):
    """One line of a job's log."""

    message: str
    level: LogLevel
    timestamp: int
    """When it was added (engine clock, ms)."""
    seq: int
    """Its number within the job's log (1 = the first line ever added)."""


class RateLimit(NamedTuple):
    """A queue's rate limit: at most `max` pulls per sliding window of `duration_ms`."""

    max: int
    duration_ms: int
    expires_at: int | None
    """When the limit lifts itself (engine clock, ms), or None for never."""


class QueueLimits(NamedTuple):
    """A queue's limits and whether they hold pulls back now."""

    rate_limit: RateLimit | None
    rate_limit_ttl: int
    """-2 without a rate limit; else ms until the limit lifts (with a ttl) or until a
    pull is admitted (0: now)."""
    concurrency_limit: int | None
    maxed: bool
    """The queue's active jobs fill its concurrency limit."""


class WorkerInfo(NamedTuple):
    """A worker in the registry (registered over the TCP protocol, kept while its
    connection is open)."""

    id: str
    name: str
    queues: list[str]
    concurrency: int
    hostname: str | None
    pid: float | None
    registered_at: int
    last_seen: int
    """Its last registration or heartbeat (engine clock, ms)."""
    active_jobs: int
    processed_jobs: int
    failed_jobs: int


ChildFailurePolicy = Literal["wait", "fail_parent", "continue_parent", "ignore", "remove"]

# A child's failure policy -> the push body's flag (bunqueue's four booleans).
_POLICY_FIELDS = {
    "fail_parent": "failParentOnFailure",
    "continue_parent": "continueParentOnFailure",
    "ignore": "ignoreDependencyOnFailure",
    "remove": "removeDependencyOnFailure",
}
# Push options a flow job takes from its own fields, not from `options`.
_FLOW_OWNED = frozenset(("job_id", "depends_on"))


class FlowJob(NamedTuple):
    """One job of a flow (`Engine.push_flow`)."""

    queue: str
    id: str
    """Its id, chosen by the caller: new, unique in the flow, without ':'."""
    data: Any = None
    children: Sequence[str] = ()
    """Ids of its children in the flow: it waits in waiting-children until they are
    done (each child names it as `parent`)."""
    parent: str | None = None
    """The id of its parent in the flow (which lists it in `children`)."""
    on_failure: ChildFailurePolicy = "wait"
    """What this child failing for good does to its parent: "wait" (the parent keeps
    waiting), "fail_parent" (it fails), "continue_parent" (it stops waiting for all its
    children and runs, the error kept in `failed`), "ignore" (it stops waiting for this
    child, the error kept in `ignored`) or "remove" (the same, nothing kept)."""
    options: PushOptions | None = None
    """Other push options (not job_id or depends_on; no unique_key or repeat)."""


class ChildrenValues(NamedTuple):
    """What a flow parent's children left, each keyed `queue:id`."""

    values: dict[str, Any]
    """Results of the children that completed."""
    failed: dict[str, str]
    """Errors of children that failed under "continue_parent"."""
    ignored: dict[str, str]
    """Errors of children that failed under "ignore"."""


class DlqConfig(NamedTuple):
    """A queue's dead-letter settings (what it does with its failed jobs)."""

    auto_retry: bool
    auto_retry_interval_ms: int
    """The first automatic retry comes this long after the failure, each later one
    twice as long after it."""
    max_auto_retries: int
    max_age_ms: int | None
    """Failed jobs older than this are dropped (None: only the retention age)."""
    max_entries: int
    """At most this many failed jobs are kept, the oldest dropped first."""


class StallConfig(NamedTuple):
    """A queue's stall settings (they replace the engine's for its leases)."""

    enabled: bool
    stall_interval_ms: int
    max_stalls: int
    grace_period_ms: int


class GroupRateLimit(NamedTuple):
    """A group's rate limit: at most `max` pulls per sliding window of `duration_ms`."""

    max: int
    duration_ms: int


def _flow_body(job: FlowJob) -> tuple[str, bytes]:
    options = dict(job.options or {})
    owned = _FLOW_OWNED & options.keys()
    if owned:
        raise InvalidInputError(
            f"flow job {job.id}: {', '.join(sorted(owned))} come from the FlowJob's own fields"
        )
    body = push_body(job.data, options, "push_flow")
    body["jobId"] = job.id
    if job.children:
        body["dependsOn"] = body["childrenIds"] = list(job.children)
    if job.parent is not None:
        body["parentId"] = job.parent
    if job.on_failure != "wait":
        field = _POLICY_FIELDS.get(job.on_failure)
        if field is None:
            raise InvalidInputError(
                f"flow job {job.id}: unknown failure policy {job.on_failure!r} (expected "
                f"wait, {', '.join(_POLICY_FIELDS)})"
            )
        body[field] = True
    return job.queue, _dumps(body, f"flow job {job.id}")


class SchedulerJobOptions(TypedDict, total=False):
    """Push options of the jobs a scheduler pushes (the push options a scheduler may set:
    bunqueue's cron `jobOptions`)."""

    max_attempts: int
    backoff: int
    timeout: int
    delay: int
    remove_on_complete: bool | int
    remove_on_fail: bool | int


# SchedulerJobOptions' keys -> the push body's fields, and back.
_JOB_OPTION_FIELDS = {k: PUSH_FIELDS[k] for k in SchedulerJobOptions.__annotations__}
_JOB_OPTION_KEYS = {v: k for k, v in _JOB_OPTION_FIELDS.items()}


class SchedulerInfo(NamedTuple):
    """A named job scheduler (bunqueue's cron): it pushes a job to `queue` on a cron
    pattern (`schedule`, evaluated in UTC) or every `repeat_every_ms`."""

    name: str
    queue: str
    job_name: str
    """The name of the jobs it pushes."""
    data: Any
    """Their data."""
    schedule: str | None
    repeat_every_ms: int | None
    timezone: str | None
    priority: int
    max_limit: int | None
    """At most this many fires (None: no limit)."""
    unique_key: str | None
    skip_missed_on_restart: bool
    skip_if_no_worker: bool
    prevent_overlap: bool
    job_options: SchedulerJobOptions | None
    next_run: int | None
    """When it fires next (engine clock, ms), or None for never."""
    executions: int
    """Fires so far (skipped ones not counted)."""


def _scheduler_info(raw: dict[str, Any]) -> SchedulerInfo:
    options = raw["job_options"]
    if options is not None:
        parsed = orjson.loads(options)
        raw["job_options"] = {_JOB_OPTION_KEYS.get(k, k): v for k, v in parsed.items()}
    raw["data"] = orjson.loads(raw["data"])
    return SchedulerInfo(**raw)


_new_tuple = tuple.__new__


def _dumps(value: Any, what: str) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as e:
        raise InvalidInputError(f"{what} is not JSON-serializable: {e}") from None


def _check_finite(**numbers: float | None) -> None:
    # orjson writes NaN/inf as null, which would silently mean "not set".
    for field, value in numbers.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"{field} must be a finite number")


def _timeout_ms(timeout: float) -> int:
    """Seconds → whole ms, refusing negative, NaN and infinite waits."""
    _check_finite(timeout=timeout)
    if timeout < 0:
        raise InvalidInputError("timeout must not be negative")
    return int(timeout * 1000)


def check_engine_options(**options: Any) -> EngineOptions:
    """The engine's options built and checked by the engine's own rules, without opening
    anything; InvalidInputError names the first option it would refuse. `Engine()` opens
    with them, and callers that validate a configuration before they start the process
    that opens the engine call this alone."""
    try:
        return EngineOptions(**options)
    except (TypeError, OverflowError) as e:
        raise InvalidInputError(f"invalid engine option: {e}") from None


def _type_error(e: TypeError) -> InvalidInputError:
    return InvalidInputError(f"wrong argument type: {e}")


class Engine:
    """A hopper engine with the full job lifecycle: in memory, or persistent when given
    a `data_dir` (see docs/durability.md).

    With a `data_dir`, start-up recovers the directory's state (a second engine on the
    same directory is refused), and every change goes to a write-ahead log. A call that
    changed state returns once its record is handed to the OS, so a killed process loses
    nothing it returned from; the `fsync` policy says when it is synced: "always" (each
    call returns after its record is synced), "interval" (synced at least every
    `fsync_interval_ms`), or "never" (left to the OS). A push with `durable=True` returns
    after its record is synced under every policy.

    `clock_ms` starts a manual clock at that time (ms): time then moves only through
    `advance_clock`, which tests use to drive delays, retries, leases and TTLs.

    `postgres_url` keeps the log and snapshots in PostgreSQL instead of `data_dir`, as
    the owner of the cluster's one slot in `namespace` (docs/cluster.md): the
    constructor waits while another broker (`broker_id`) holds the slot, then takes it
    over, recovering its state, and renews its lease (`slot_lease_ms`) until closed.
    `advertise_http`/`advertise_tcp` ("host:port") are recorded with the slot: where the
    brokers' fronts reach this owner's HTTP and TCP backends. A cluster of `slots` slots
    (fixed when it is created) runs one engine per slot; this one serves `slot`, and
    the ids it generates carry it.
    """

    def __init__(
        self,
        *,
        max_payload_bytes: int | None = None,
        stall_interval_ms: int | None = None,
        max_stalls: int | None = None,
        retention_count: int | None = None,
        retention_age_ms: int | None = None,
        retention_bytes: int | None = None,
        clock_ms: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        fsync: FsyncPolicy = "interval",
        fsync_interval_ms: int = 10,
        snapshot_bytes: int | None = None,
        segment_bytes: int | None = None,
        repair: bool = False,
        max_logs_per_job: int | None = None,
        postgres_url: str | None = None,
        namespace: str = "default",
        broker_id: str = "",
        slot_lease_ms: int = 5000,
        advertise_http: str = "",
        advertise_tcp: str = "",
        slot: int = 0,
        slots: int = 1,
    ) -> None:
        options = check_engine_options(
            max_payload_bytes=max_payload_bytes,
            stall_interval_ms=stall_interval_ms,
            max_stalls=max_stalls,
            retention_count=retention_count,
            retention_age_ms=retention_age_ms,
            retention_bytes=retention_bytes,
            data_dir=data_dir,
            fsync=fsync,
            fsync_interval_ms=fsync_interval_ms,
            snapshot_bytes=snapshot_bytes,
            segment_bytes=segment_bytes,
            repair=repair,
            max_logs_per_job=max_logs_per_job,
            postgres_url=postgres_url,
            namespace=namespace,
            broker_id=broker_id,
            slot_lease_ms=slot_lease_ms,
            advertise_http=advertise_http,
            advertise_tcp=advertise_tcp,
            slot=slot,
            slots=slots,
        )
        try:
            self._core = Core(options, clock_ms=clock_ms)
        except (TypeError, OverflowError) as e:
            raise InvalidInputError(f"invalid engine option: {e}") from None
        self._watcher: LoopWatcher | None = None

    # ----- producing -----------------------------------------------------------------

    def push(self, queue: str, data: Any, **options: Unpack[PushOptions]) -> str:
        """Adds a job and returns its id. Options are the job server's push fields in
        snake_case (`hopper.push_options.PushOptions`: priority, delay, max_attempts,
        backoff, ttl, timeout, unique_key, job_id, tags, group_id, lifo,
        remove_on_complete, remove_on_fail, durable, depends_on, repeat, name); those not
        given take the engine's defaults. A push whose `unique_key` matches a live job,
        or whose `job_id` exists, returns that job's id and adds nothing."""
        # The engine validates every value, so a wrong type or range comes back as
        # InvalidInputError with the field's name.
        _check_finite(ttl=options.get("ttl"), timeout=options.get("timeout"))
        try:
            body = push_body(data, options)
            # orjson's encode error is a TypeError too: both mean a wrong argument type.
            return self._core.push_body(queue, orjson.dumps(body))[0]
        except TypeError as e:
            raise _type_error(e) from None

    def push_many(self, queue: str, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Adds many jobs in one call, all or none. Each mapping has `data` and any push
        option, in snake_case or the job server's camelCase."""
        try:
            return self._core.push_many_body(queue, _dumps(list(jobs), "jobs"))
        except TypeError as e:
            raise _type_error(e) from None

    def push_flow(self, jobs: Iterable[FlowJob]) -> list[str]:
        """Pushes a flow, all or none: parents and children, possibly on several queues,
        each with the id it names. A parent waits in waiting-children until its children
        are done (per each child's `on_failure`), then runs; completed children's results
        are kept for it (`children_values`). Returns the ids in the order given. A bad
        graph (unknown or duplicate id, links that do not match, a cycle) is
        InvalidInputError and adds nothing."""
        try:
            bodies = [_flow_body(FlowJob(*job)) for job in jobs]
            return self._core.push_flow(bodies)
        except TypeError as e:
            raise _type_error(e) from None

    # ----- consuming -----------------------------------------------------------------

    def pull(self, queue: str, *, timeout: float = 0, owner: int = 0) -> Job | None:
        """Leases the next job of `queue`, waiting up to `timeout` seconds for one.

        `owner` tags the lease with a client id so `release_owner` can return it."""
        ms = _timeout_ms(timeout) if timeout else 0
        try:
            got = self._core.pull(queue, owner, ms)
        except (TypeError, OverflowError) as e:
            raise InvalidInputError(f"wrong argument: {e}") from None
        if got is None:
            return None
        job_id, token, data, name, priority, attempts, max_attempts, created_at = got
        # tuple.__new__ skips the named tuple's Python-level constructor (hot path).
        return _new_tuple(
            Job,
            (
                job_id,
                queue,
                name,
                orjson.loads(data),
                token,
                priority,
                attempts,
                max_attempts,
                created_at,
            ),
        )

    async def pull_async(
        self, queue: str, *, timeout: float | None = None, owner: int = 0
    ) -> Job | None:
        """Awaits the next job of `queue` (woken by the engine, no polling); None when
        `timeout` seconds pass first. `owner` as for `pull`."""
        return await self._await_work(queue, timeout, lambda: self.pull(queue, owner=owner))

    async def _await_work(
        self, queue: str, timeout: float | None, attempt: Callable[[], R | None]
    ) -> R | None:
        """Runs `attempt` until it returns something, sleeping between tries until the
        engine reports work on `queue` (through the notification fd) or time runs out."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        watcher = self._watch(loop)
        while True:
            got = attempt()
            if got is not None:
                return got
            if self._core.request_wake(queue):
                continue
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            if not await watcher.wait_for_queue(queue, remaining):
                return None

    def ack(self, job_id: str, token: str | None, result: Any = None) -> None:
        """Completes an active job. `token` must match its lease (None skips the check)."""
        try:
            self._core.ack(job_id, token, None if result is None else orjson.dumps(result))
        except TypeError as e:
            raise _type_error(e) from None

    def fail(self, job_id: str, token: str | None, error: str | None = None) -> int | None:
        """Fails the current attempt. Returns the retry delay in ms, or None when the job
        had no attempts left and is now failed (dead-letter)."""
        try:
            return self._core.fail(job_id, token, error)
        except TypeError as e:
            raise _type_error(e) from None

    def extend_lease(self, job_id: str, token: str | None, duration_ms: int | None = None) -> int:
        """Renews the lease (heartbeat). Returns the new stall deadline (ms)."""
        return self._call(self._core.extend_lease, job_id, token, duration_ms)

    def progress(self, job_id: str, progress: int, token: str | None = None) -> None:
        self._call(self._core.progress, job_id, progress, token)

    def extend_lock(
        self, job_id: str, token: str | None = None, duration_ms: int | None = None
    ) -> int:
        """Renews the lease like `extend_lease`, but a lease pulled with a lock owner may
        be renewed without its token (a given token must still match): the reference's
        ExtendLock. Returns the new stall deadline (ms)."""
        return self._call(self._core.extend_lock, job_id, token, duration_ms)

    def move_to_delayed(self, job_id: str, token: str | None, delay_ms: int) -> None:
        """Puts an active job off: it runs again `delay_ms` from now without spending an
        attempt (the reference's `DelayedError`). The lease ends; the token must match
        (None skips the check). A job that is not active is InvalidStateError."""
        self._call(self._core.move_to_delayed, job_id, delay_ms, token)

    def release_owner(self, owner: int) -> int:
        """Returns every job leased by `owner` to waiting (its connection closed)."""
        return self._call(self._core.release_owner, owner)

    # ----- single jobs ---------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job in the job server's JSON shape, with `state`; None if unknown."""
        raw = self._call(self._core.get_json, job_id)
        return None if raw is None else orjson.loads(raw)

    def cancel(self, job_id: str) -> None:
        """Removes a job; an active one fails for good with "Job cancelled"."""
        self._call(self._core.cancel, job_id)

    def cancel_pending(self, job_id: str) -> None:
        """Removes a job that has not started (waiting, delayed, waiting-children);
        refuses active and finished jobs with InvalidStateError."""
        self._call(self._core.cancel_pending, job_id)

    def remove(self, job_id: str) -> None:
        """Removes a job that is not active."""
        self._call(self._core.remove, job_id)

    def retry(self, job_id: str) -> None:
        self._call(self._core.retry, job_id)

    def promote(self, job_id: str) -> None:
        self._call(self._core.promote, job_id)

    def update(self, job_id: str, *, data: Any = None, priority: int | None = None) -> None:
        """Replaces data and/or priority of a job that is not active."""
        raw = None if data is None else _dumps(data, "data")
        self._call(self._core.update, job_id, raw, priority)

    def update_data(self, job_id: str, data: Any) -> None:
        """Replaces the data of a job in any state, active included (a processor may
        rewrite the data of the job it holds: the reference's `job.updateData`)."""
        self._call(self._core.update_data, job_id, _dumps(data, "data"))

    def change_delay(self, job_id: str, delay_ms: int, token: str | None = None) -> None:
        """Runs a job `delay_ms` from now: a waiting or delayed job gets the new time (0
        makes it ready now), an active one is moved to delayed as by `move_to_delayed`
        (with its lease's token). Finished jobs are InvalidStateError."""
        self._call(self._core.change_delay, job_id, delay_ms, token)

    def discard_job(self, job_id: str, token: str | None = None) -> None:
        """Fails a job for good at once ("Job discarded"), whatever attempts it has
        left: an active job (with its lease's token) or one that has not started.
        Finished jobs are InvalidStateError."""
        self._call(self._core.discard_job, job_id, token)

    def children_values(self, job_id: str) -> ChildrenValues:
        """What flow parent `job_id`'s children left (empty for a job with none)."""
        values, failed, ignored = self._call(self._core.children_values, job_id)
        return ChildrenValues({k: orjson.loads(v) for k, v in values}, dict(failed), dict(ignored))

    def move_to_waiting_children(self, job_id: str, token: str | None = None) -> bool:
        """An active job whose dependencies have not all completed goes back to
        waiting-children; its lease ends (the token must match; None skips the check).
        False, the job still active, when none is pending. A job that is not active is
        InvalidStateError."""
        return self._call(self._core.move_to_waiting_children, job_id, token)

    def remove_child_dependency(self, job_id: str) -> bool:
        """Flow child `job_id`'s parent stops waiting for it (and runs if nothing else
        is pending); the child stays as it is. False when there is nothing to detach (the
        parent is gone or does not wait for it, or the child finished); a job without a
        parent is InvalidInputError."""
        return self._call(self._core.remove_child_dependency, job_id)

    def add_log(self, job_id: str, message: str, level: LogLevel = "info") -> None:
        """Adds a line to a job's log, stamped with the engine clock. A job keeps its
        newest `max_logs_per_job` lines; they go when the job goes."""
        self._call(self._core.add_log, job_id, message, level)

    def logs(
        self, job_id: str, start: int | None = None, end: int | None = None
    ) -> tuple[list[LogEntry], int]:
        """A job's log lines, oldest first, from `start` to `end` (both inclusive,
        negative counting from the end, as bunqueue's GetLogs slices them; all lines
        when both are None), and how many lines it has in all."""
        raw, total = self._call(self._core.logs, job_id, start, end)
        return [LogEntry(*entry) for entry in raw], total  # type: ignore[arg-type]

    def clear_logs(self, job_id: str, keep: int = 0) -> None:
        """Clears a job's log but for its newest `keep` lines."""
        self._call(self._core.clear_logs, job_id, keep)

    def links(self, job_id: str) -> tuple[list[str], list[str]]:
        """(ids this job depends on, ids that depend on it)."""
        return self._call(self._core.links, job_id)

    # ----- queues --------------------------------------------------------------------

    def pause(self, queue: str, name: str | None = None) -> None:
        """Pauses a queue, or only the jobs called `name` in it."""
        self._call(self._core.pause, queue, name)

    def resume(self, queue: str, name: str | None = None) -> None:
        self._call(self._core.resume, queue, name)

    def is_paused(self, queue: str) -> bool:
        return self._call(self._core.is_paused, queue)

    def paused_names(self, queue: str) -> list[str]:
        return self._call(self._core.paused_names, queue)

    def drain(self, queue: str) -> int:
        """Removes every waiting and delayed job of `queue`."""
        return self._call(self._core.drain_queue, queue)

    def clean(self, queue: str, state: State, grace_ms: int = 0, limit: int = 0) -> list[str]:
        """Removes up to `limit` (0 = all) jobs in `state` older than `grace_ms`."""
        return self._call(self._core.clean, queue, state, grace_ms, limit)

    def retry_all(self, queue: str, state: State = "failed") -> int:
        return self._call(self._core.retry_all, queue, state)

    def promote_all(self, queue: str) -> int:
        return self._call(self._core.promote_all, queue)

    def promote_first(self, queue: str, limit: int) -> int:
        """Makes up to `limit` delayed jobs of `queue` ready now, those due soonest
        first. Returns how many."""
        return self._call(self._core.promote_first, queue, limit)

    def set_rate_limit(
        self, queue: str, max: int, duration_ms: int, ttl_ms: int | None = None
    ) -> None:
        """At most `max` pulls of `queue` per sliding window of `duration_ms`; with
        `ttl_ms`, the limit lifts itself after that long. Replaces any earlier one."""
        self._call(self._core.set_rate_limit, queue, max, duration_ms, ttl_ms)

    def clear_rate_limit(self, queue: str) -> None:
        self._call(self._core.clear_rate_limit, queue)

    def set_concurrency(self, queue: str, limit: int) -> None:
        """At most `limit` jobs of `queue` active at once."""
        self._call(self._core.set_concurrency, queue, limit)

    def clear_concurrency(self, queue: str) -> None:
        self._call(self._core.clear_concurrency, queue)

    def queue_limits(self, queue: str, max_jobs: int | None = None) -> QueueLimits:
        """`queue`'s rate and concurrency limits and whether they hold pulls back now
        (no limits for a queue that has none or does not exist). `max_jobs` as bunqueue's
        `getRateLimitTtl(maxJobs)`: the ttl is 0 until that many pulls are in the window."""
        rate, ttl, concurrency, maxed = self._call(self._core.queue_limits, queue, max_jobs)
        return QueueLimits(None if rate is None else RateLimit(*rate), ttl, concurrency, maxed)

    def set_dlq_config(
        self,
        queue: str,
        *,
        auto_retry: bool | None = None,
        auto_retry_interval_ms: int | None = None,
        max_auto_retries: int | None = None,
        max_age_ms: int | None = None,
        clear_max_age: bool = False,
        max_entries: int | None = None,
    ) -> DlqConfig:
        """Changes the settings given of `queue`'s dead-letter (failed) set and applies
        them at once: at most `max_entries` failed jobs (the oldest dropped), none older
        than `max_age_ms` (`clear_max_age`: no age bound but retention's), and with
        `auto_retry` a failed job is retried `auto_retry_interval_ms` * 2**n after its
        failure (n: its automatic retries so far) until n reaches `max_auto_retries`.
        Returns the settings in force."""
        raw = self._call(
            self._core.set_dlq_config,
            queue,
            auto_retry=auto_retry,
            auto_retry_interval_ms=auto_retry_interval_ms,
            max_auto_retries=max_auto_retries,
            max_age_ms=max_age_ms,
            clear_max_age=clear_max_age,
            max_entries=max_entries,
        )
        return DlqConfig(*raw)

    def dlq_config(self, queue: str) -> DlqConfig:
        """`queue`'s dead-letter settings in force (the engine's until set)."""
        return DlqConfig(*self._call(self._core.dlq_config, queue))

    def set_stall_config(
        self,
        queue: str,
        *,
        enabled: bool | None = None,
        stall_interval_ms: int | None = None,
        max_stalls: int | None = None,
        grace_period_ms: int | None = None,
    ) -> StallConfig:
        """Changes the stall settings given of `queue` (leases taken or renewed from
        now on follow them): a lease not renewed within `stall_interval_ms` stalls, the
        `max_stalls`-th stall fails the job, no stall counts before the job has run
        `grace_period_ms`, and `enabled=False` stops leases without an explicit duration
        from stalling. Returns the settings in force."""
        raw = self._call(
            self._core.set_stall_config,
            queue,
            enabled=enabled,
            stall_interval_ms=stall_interval_ms,
            max_stalls=max_stalls,
            grace_period_ms=grace_period_ms,
        )
        return StallConfig(*raw)

    def stall_config(self, queue: str) -> StallConfig:
        """`queue`'s stall settings in force (the engine's until set)."""
        return StallConfig(*self._call(self._core.stall_config, queue))

    # ----- groups (jobs pushed with group_id) ------------------------------------------

    def pause_group(self, queue: str, group: str) -> bool:
        """Pulls of `queue` skip `group`'s jobs until it is resumed (other groups are
        served in order). Returns whether it was not paused already."""
        return self._call(self._core.pause_group, queue, group)

    def resume_group(self, queue: str, group: str) -> bool:
        """Returns whether the group was paused."""
        return self._call(self._core.resume_group, queue, group)

    def is_group_paused(self, queue: str, group: str) -> bool:
        return self._call(self._core.is_group_paused, queue, group)

    def set_group_concurrency(self, queue: str, group: str, limit: int) -> None:
        """At most `limit` (positive) jobs of `group` active at once."""
        self._call(self._core.set_group_concurrency, queue, group, limit)

    def remove_group_concurrency(self, queue: str, group: str) -> bool:
        """Returns whether the group had a concurrency limit."""
        return self._call(self._core.remove_group_concurrency, queue, group)

    def group_concurrency(self, queue: str, group: str) -> int | None:
        return self._call(self._core.group_concurrency, queue, group)

    def set_group_rate_limit(self, queue: str, group: str, max: int, duration_ms: int) -> None:
        """At most `max` pulls of `group` per sliding window of `duration_ms`."""
        self._call(self._core.set_group_rate_limit, queue, group, max, duration_ms)

    def remove_group_rate_limit(self, queue: str, group: str) -> bool:
        """Returns whether the group had a rate limit."""
        return self._call(self._core.remove_group_rate_limit, queue, group)

    def group_rate_limit(self, queue: str, group: str) -> GroupRateLimit | None:
        raw = self._call(self._core.group_rate_limit, queue, group)
        return None if raw is None else GroupRateLimit(*raw)

    def workers(self) -> list[WorkerInfo]:
        """The workers registry, oldest registration first."""
        return [WorkerInfo(**w) for w in self._core.workers()]

    def obliterate(self, queue: str, *, force: bool = False) -> int:
        return self._call(self._core.obliterate, queue, force)

    def queues(self) -> list[str]:
        return self._core.queue_names()

    def has_queue(self, queue: str) -> bool:
        """Whether `queue` exists (it has had a job, a pause or a pull)."""
        return self._call(self._core.has_queue, queue)

    def counts(self, queue: str | None = None) -> dict[str, int]:
        """Jobs per state in `queue` (all queues when None). Maintained, never counted."""
        return self._call(self._core.counts, queue)

    def list_jobs(
        self, queue: str, state: State, start: int = 0, end: int = 99
    ) -> tuple[list[dict[str, Any]], int]:
        """Jobs `start..=end` (at most 1000) in `state`, and the total in that state."""
        raw, total = self._call(self._core.list_jobs, queue, state, start, end)
        return [orjson.loads(r) for r in raw], total

    def failure_groups(self, queue: str) -> list[tuple[str, int, str]]:
        """Failed jobs grouped by error: [(message, count, newest job id)], largest first."""
        return self._call(self._core.failure_groups, queue)

    def retry_failures(self, queue: str, reason: str) -> int:
        """Retries the failed jobs of `queue` whose error is `reason`."""
        return self._call(self._core.retry_failures, queue, reason)

    def oldest_waiting(self, queue: str) -> int | None:
        """Since when (ms) the longest-waiting job of `queue` has been ready, or None."""
        return self._call(self._core.oldest_waiting, queue)

    def scheduled_count(self, queue: str) -> int:
        """Jobs with a repeat schedule in `queue`, in any state."""
        return self._call(self._core.scheduled_count, queue)

    def flow_parents(
        self, queue: str, state: State | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Jobs of `queue` with `depends_on` (flow parents), newest first."""
        raw = self._call(self._core.flow_parents, queue, state, limit)
        return [orjson.loads(r) for r in raw]

    def groups(self, queue: str) -> list[tuple[str, int, int]]:
        """[(groupId, active, waiting)]"""
        return self._call(self._core.groups, queue)

    def search(
        self, query: str, kind: SearchType = "job", queue: str | None = None, limit: int = 100
    ) -> list[str]:
        """Job ids (or queue names for kind="queue") matching `query`."""
        return self._call(self._core.search, query, kind, queue, limit)

    def metrics(
        self, queue: str, from_ms: int, to_ms: int, granularity_ms: int = 60_000
    ) -> list[tuple[int, str, int, int, int, int, int, int]]:
        """[(period start, job name, completed, failed, total ms, min ms, max ms, pushed)]"""
        return self._call(self._core.metrics, queue, from_ms, to_ms, granularity_ms)

    def latest_activity(self, queue: str) -> int | None:
        return self._call(self._core.latest_activity, queue)

    def stats(self) -> dict[str, int]:
        """Lifetime counters (pushed, pulled, completed, failed, ...) and index sizes."""
        return self._core.stats()

    # ----- job schedulers ------------------------------------------------------------

    def upsert_scheduler(
        self,
        name: str,
        queue: str,
        data: Any = None,
        *,
        schedule: str | None = None,
        repeat_every_ms: int | None = None,
        job_name: str | None = None,
        priority: int = 0,
        max_limit: int | None = None,
        timezone: str | None = None,
        unique_key: str | None = None,
        immediately: bool = False,
        skip_missed_on_restart: bool | None = None,
        skip_if_no_worker: bool = False,
        prevent_overlap: bool | None = None,
        job_options: SchedulerJobOptions | None = None,
    ) -> SchedulerInfo:
        """Creates or replaces the scheduler `name` (bunqueue's `Cron`): it pushes a job
        called `job_name` ("default") with `data` to `queue` on the cron pattern
        `schedule` (5 or 6 fields or an `@daily`-style shortcut, in UTC; it wins over an
        interval) or every `repeat_every_ms`. A replaced scheduler keeps its execution
        count; its next run is computed afresh.

        `max_limit`: at most that many fires (0 or None: no limit). `immediately`: a new
        scheduler fires at once. `skip_missed_on_restart` (default True): a run missed
        while the server was down is skipped, not fired once at start-up.
        `skip_if_no_worker`: a run is skipped while no registered worker serves the
        queue. `prevent_overlap` (default True): the jobs carry the uniqueKey
        `cron:<name>` (unless `unique_key` names another), so a run adds nothing while
        the previous job is live; set to True explicitly, the upsert also removes that
        job if it is still waiting. `job_options`: push options of the jobs.

        Returns the scheduler as stored (before an `immediately` fire). A bad pattern,
        interval, time zone or option is InvalidInputError."""
        _check_finite(priority=priority)
        options = None
        if job_options is not None:
            unknown = set(job_options) - _JOB_OPTION_FIELDS.keys()
            if unknown:
                raise InvalidInputError(
                    f"unknown job option(s): {', '.join(sorted(unknown))} (expected "
                    f"{', '.join(_JOB_OPTION_FIELDS)})"
                )
            body = {_JOB_OPTION_FIELDS[k]: v for k, v in job_options.items() if v is not None}
            options = _dumps(body, "job_options")
        raw = self._call(
            self._core.upsert_scheduler,
            name,
            queue,
            _dumps(data, "data"),
            job_name=job_name,
            schedule=schedule,
            repeat_every_ms=repeat_every_ms,
            timezone=timezone,
            priority=priority,
            max_limit=max_limit,
            unique_key=unique_key,
            immediately=immediately,
            skip_missed_on_restart=skip_missed_on_restart,
            skip_if_no_worker=skip_if_no_worker,
            prevent_overlap=prevent_overlap,
            job_options=options,
        )
        return _scheduler_info(raw)

    def remove_scheduler(self, name: str) -> bool:
        """Removes the scheduler `name`; False if there is none. Jobs it pushed stay."""
        return self._call(self._core.remove_scheduler, name)

    def schedulers(self) -> list[SchedulerInfo]:
        """Every job scheduler, first registration first."""
        return [_scheduler_info(s) for s in self._core.schedulers()]

    def scheduler(self, name: str) -> SchedulerInfo | None:
        """The job scheduler `name`, or None."""
        raw = self._call(self._core.scheduler, name)
        return None if raw is None else _scheduler_info(raw)

    # ----- durability ----------------------------------------------------------------

    @property
    def persistent(self) -> bool:
        return self._core.storage_info() is not None

    def recovery_report(self) -> dict[str, Any] | None:
        """What start-up found: jobs, records replayed, warnings (torn tail cut, ...)."""
        return self._core.recovery_report()

    def storage_info(self) -> dict[str, Any] | None:
        """LSNs, log bytes since the last snapshot, snapshots taken, policy, error."""
        return self._core.storage_info()

    def snapshot(self) -> tuple[int, int, int] | None:
        """Writes a snapshot now: (number, jobs, bytes). Normally automatic."""
        return self._core.snapshot()

    def dump_state(self) -> str:
        """Canonical text of everything a restart preserves (for tests)."""
        return self._core.dump_state()

    # ----- events and time -----------------------------------------------------------

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Calls `listener(batch)` on the running event loop with each batch of events,
        each `(eventType, queue, event JSON bytes)`. Returns an unsubscribe function."""
        watcher = self._watch(asyncio.get_running_loop())
        self._core.set_events_enabled(True)
        remove = watcher.add_listener(listener)

        def unsubscribe() -> None:
            remove()
            # Recording events costs a payload copy per push: stop when nobody listens.
            if not watcher.has_listeners:
                self._core.set_events_enabled(False)

        return unsubscribe

    def advance_clock(self, ms: int) -> None:
        """Moves a manual clock (`clock_ms=`) forward and applies due timers."""
        self._call(self._core.advance_clock, ms)

    def now_ms(self) -> int:
        return self._core.now_ms()

    def close(self) -> None:
        """Stops the engine's timer thread and detaches from the event loop."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._core.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- plumbing ------------------------------------------------------------------

    def _watch(self, loop: asyncio.AbstractEventLoop) -> LoopWatcher:
        if self._watcher is None or self._watcher.loop is not loop:
            if self._watcher is not None:
                self._watcher.close()
            self._watcher = LoopWatcher(loop, self._core)
        return self._watcher

    @staticmethod
    def _call(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (TypeError, OverflowError) as e:
            raise InvalidInputError(f"wrong argument: {e}") from None
