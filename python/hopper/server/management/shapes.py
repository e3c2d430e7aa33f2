"""The management API's objects, built from the engine's job-server JSON: a job, a queue
summary and detail, a metric bucket. Times are ISO-8601 UTC with milliseconds."""

from __future__ import annotations

import time
from typing import Any

from hopper.engine import Engine, LogEntry, SchedulerInfo, WorkerInfo
from hopper.job import STATES as STATES
from hopper.push_options import FIELDS as PUSH_FIELDS

ALL_NAMES = "__all__"


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _opts(j: dict[str, Any]) -> dict[str, Any]:
    """The job's options in the reference's `opts` vocabulary."""
    opts: dict[str, Any] = {
        "priority": j["priority"],
        "attempts": j["maxAttempts"],
        "backoff": {"type": "exponential", "delay": j["backoff"]},
        "lifo": j["lifo"],
        "removeOnComplete": j["removeOnComplete"],
        "removeOnFail": j["removeOnFail"],
    }
    if j["delay"]:
        opts["delay"] = j["delay"]
    if j["timeout"] is not None:
        opts["timeout"] = j["timeout"]
    if j["ttl"] is not None:
        opts["ttl"] = j["ttl"]
    if j["uniqueKey"] is not None:
        opts["deduplication"] = {"key": j["uniqueKey"]}
    if j["groupId"] is not None:
        opts["group"] = {"id": j["groupId"]}
    if j["tags"]:
        opts["tags"] = j["tags"]
    if j["durable"]:
        opts["durable"] = True
    repeat = j["repeat"]
    if repeat is not None:
        opts["repeat"] = {
            k: v
            for k, v in (
                ("every", repeat.get("every")),
                ("cron", repeat.get("pattern")),
                ("limit", repeat.get("limit")),
            )
            if v is not None
        }
    return opts


def job(engine: Engine, j: dict[str, Any]) -> dict[str, Any]:
    """A job. Flows: a job with `dependsOn` is the parent of the jobs it depends on, so
    `childrenIds` is its `dependsOn` and `parentId` the first job that depends on it."""
    state = j["state"]
    deps: list[str] = j["dependsOn"]
    parent_id = j["dependents"][0] if j["dependents"] else None
    parent_queue = None
    if parent_id is not None:
        parent = engine.get(parent_id)
        parent_queue = parent["queue"] if parent else None
    pending = 0
    if deps and state == "waiting-children":
        pending = sum(1 for d in deps if (engine.get(d) or {}).get("state") != "completed")
    error = j["error"]
    return {
        "id": j["id"],
        "name": j["name"],
        "queueName": j["queue"],
        "data": j["data"],
        "state": state,
        "attemptsMade": j["attempts"],
        "progress": j["progress"],
        "returnvalue": j["result"],
        "failedReason": error,
        "opts": _opts(j),
        "deduplicationKey": j["uniqueKey"],
        "logs": [],
        "stacktrace": [error] if error is not None and state == "failed" else [],
        "createdAt": iso(j["createdAt"]),
        "processedAt": iso(j["startedAt"]),
        "completedAt": iso(j["completedAt"]),
        "failedAt": iso(j["failedAt"]),
        "delayUntil": iso(j["runAt"]) if state == "delayed" else None,
        "parentId": parent_id,
        "parentQueueName": parent_queue,
        "childrenIds": deps,
        "pendingChildrenCount": pending,
        "groupId": j["groupId"],
        "tags": j["tags"],
        "priority": j["priority"],
    }


def counts(engine: Engine, queue: str) -> dict[str, int]:
    c = engine.counts(queue)
    return {s: c[s] for s in STATES}


def queue_summary(engine: Engine, queue: str) -> dict[str, Any]:
    return {
        "name": queue,
        "counts": counts(engine, queue),
        "isPaused": engine.is_paused(queue),
        "latestActivity": iso(engine.latest_activity(queue)),
        "scheduledCount": engine.scheduled_count(queue),
        "oldestWaitingAt": iso(engine.oldest_waiting(queue)),
    }


def queue_detail(engine: Engine, queue: str) -> dict[str, Any]:
    paused = engine.paused_names(queue)
    if engine.is_paused(queue):
        paused = [ALL_NAMES, *paused]
    return {**queue_summary(engine, queue), "pausedNames": paused, "limits": limits(engine, queue)}


def limits(engine: Engine, queue: str) -> dict[str, Any]:
    """The queue's rate and concurrency limits (a hopper extension of the detail)."""
    info = engine.queue_limits(queue)
    rate = info.rate_limit
    return {
        "rateLimit": None
        if rate is None
        else {"max": rate.max, "duration": rate.duration_ms, "expiresAt": iso(rate.expires_at)},
        "rateLimitTtl": info.rate_limit_ttl,
        "concurrency": info.concurrency_limit,
        "concurrencyMaxed": info.maxed,
    }


def log_entry(entry: LogEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "level": entry.level,
        "message": entry.message,
        "timestamp": iso(entry.timestamp),
    }


def worker(w: WorkerInfo, now_ms: int) -> dict[str, Any]:
    """A registered worker, with `status` by the age of its last heartbeat, as the
    reference classifies it: live under 10 s, warning under 30 s, else stale."""
    age = now_ms - w.last_seen
    return {
        "id": w.id,
        "name": w.name,
        "queues": w.queues,
        "concurrency": w.concurrency,
        "hostname": w.hostname,
        "pid": None if w.pid is None else int(w.pid) if w.pid.is_integer() else w.pid,
        "registeredAt": iso(w.registered_at),
        "lastHeartbeatAt": iso(w.last_seen),
        "activeJobs": w.active_jobs,
        "processedJobs": w.processed_jobs,
        "failedJobs": w.failed_jobs,
        "status": "live" if age < 10_000 else "warning" if age < 30_000 else "stale",
    }


def scheduler(s: SchedulerInfo) -> dict[str, Any]:
    """A job scheduler: bunqueue's `cronData` fields in the API's vocabulary
    (`queueName`, ISO times), with its flags and the pushed jobs' options."""
    options = s.job_options
    return {
        "name": s.name,
        "queueName": s.queue,
        "jobName": s.job_name,
        "data": s.data,
        "schedule": s.schedule,
        "repeatEvery": s.repeat_every_ms,
        "timezone": s.timezone,
        "priority": s.priority,
        "maxLimit": s.max_limit,
        "executions": s.executions,
        "nextRunAt": iso(s.next_run),
        "uniqueKey": s.unique_key,
        "skipMissedOnRestart": s.skip_missed_on_restart,
        "skipIfNoWorker": s.skip_if_no_worker,
        "preventOverlap": s.prevent_overlap,
        "jobOptions": None
        if options is None
        else {PUSH_FIELDS.get(k, k): v for k, v in options.items()},
    }


def bucket(
    queue: str, name: str, start_ms: int, granularity: str, row: tuple[int, ...]
) -> dict[str, Any]:
    completed, failed, total, lo, hi, pushed = row
    return {
        "queueName": queue,
        "jobName": name,
        "periodStart": iso(start_ms),
        "granularity": granularity,
        "completedCount": completed,
        "failedCount": failed,
        "totalProcessMs": total,
        "minProcessMs": lo,
        "maxProcessMs": hi,
        "pushedCount": pushed,
    }


# A broker's front refreshes its row about every second; one not seen for this long is
# stale (killed, hung, or cut off from the database). A cleanly stopped one has no row.
BROKER_LIVE_MS = 5_000


def _broker(
    broker_id: str,
    http: str,
    tcp: str,
    started_ms: int,
    seen_ms: int,
    now_ms: int,
    slots: list[int],
) -> dict[str, Any]:
    return {
        "id": broker_id,
        "http": http or None,
        "tcp": tcp or None,
        "startedAt": iso(started_ms),
        "lastSeenAt": iso(seen_ms),
        "status": "live" if now_ms - seen_ms <= BROKER_LIVE_MS else "stale",
        "slots": slots,
    }


def cluster(view: dict[str, Any], namespace: str, served_by: str) -> dict[str, Any]:
    """`hopper._engine.cluster_view`'s answer in the API's vocabulary, judged by the
    database's clock (the one every broker's lease and announcement uses): each broker
    live or stale with the slots it owns, each slot's lease left (0 once it ended)."""
    now = view["now_ms"]
    owned: dict[str, list[int]] = {}
    for s in view["slots"]:
        owned.setdefault(s["owner"], []).append(s["slot"])
    return {
        "mode": "cluster",
        "namespace": namespace,
        "servedBy": served_by,
        "now": iso(now),
        "slots": [
            {
                "slot": s["slot"],
                "owner": s["owner"],
                "epoch": s["epoch"],
                "leaseUntil": iso(s["lease_until_ms"]),
                "leaseRemainingMs": max(0, s["lease_until_ms"] - now),
                "ownerHttp": s["http"] or None,
                "ownerTcp": s["tcp"] or None,
            }
            for s in view["slots"]
        ],
        "brokers": [
            _broker(
                b["broker_id"],
                b["http"],
                b["tcp"],
                b["started_ms"],
                b["seen_ms"],
                now,
                owned.get(b["broker_id"], []),
            )
            for b in view["brokers"]
        ],
    }


def single_server(
    server_id: str, http: str, tcp: str, started_ms: int, now_ms: int
) -> dict[str, Any]:
    """A server outside cluster mode, in the cluster view's shape: itself, live, and
    no slots (its log is its own data directory or memory)."""
    return {
        "mode": "single",
        "namespace": None,
        "servedBy": server_id,
        "now": iso(now_ms),
        "slots": [],
        "brokers": [_broker(server_id, http, tcp, started_ms, now_ms, now_ms, [])],
    }
