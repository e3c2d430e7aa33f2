"""Read-side routes: groups, flows, search, metrics (per queue, sparklines, status) and
`/api/config`, which a UI reads before signing in."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from hopper.server.http import HttpError, Request, Response
from hopper.server.management import shapes
from hopper.server.management.api import bad_request, data, not_found, state_param
from hopper.server.management.schemas import STATE, data_of, ref
from hopper.server.router import Auth, Doc, Param

if TYPE_CHECKING:
    from hopper.server.management.api import Management

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
GRANULARITY_MS = {"minute": MINUTE_MS, "hour": HOUR_MS}
FLOWS_LIMIT = 100
SEARCH_LIMIT = 50
SPARK_POINTS = 60
SEARCH_TYPES = ("job", "queue", "payload")


def parse_time(raw: str | None, default_ms: int) -> int:
    if raw is None or raw == "":
        return default_ms
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise bad_request("Invalid from/to date: expected ISO 8601") from None
    if moment.tzinfo is None:
        raise bad_request("Invalid from/to date: give a time zone (e.g. Z)")
    return int(moment.timestamp() * 1000)


def merge(rows: list[tuple[int, ...]]) -> tuple[int, int, int, int, int, int]:
    """Adds buckets of several job names into one (the `__all__` bucket). The minimum
    time is over the buckets that finished jobs (a bucket of pushes alone has none)."""
    completed = sum(r[0] for r in rows)
    failed = sum(r[1] for r in rows)
    total = sum(r[2] for r in rows)
    lo = min((r[3] for r in rows if r[0] + r[1] > 0), default=0)
    hi = max(r[4] for r in rows)
    pushed = sum(r[5] for r in rows)
    return completed, failed, total, lo, hi, pushed


def register(api: Management) -> None:
    engine = api.engine

    def metrics_on() -> None:
        if not api.metrics_enabled:
            raise HttpError(
                400,
                "Metrics are disabled on this server (HOPPER_DASHBOARD_METRICS)",
                "METRICS_DISABLED",
            )

    async def groups(req: Request) -> Response:
        queue = api.existing_queue(req)
        return data(
            [
                {"groupId": g, "activeCount": active, "waitingCount": waiting}
                for g, active, waiting in engine.groups(queue)
            ]
        )

    async def flows(req: Request) -> Response:
        raw = req.query.get("state")
        state = None if raw in (None, "", "all") else state_param(raw, shapes.STATES)
        parents: list[dict[str, Any]] = []
        for queue in api.queues():
            parents += engine.flow_parents(queue, state, FLOWS_LIMIT)  # type: ignore[arg-type]
        parents.sort(key=lambda j: j["createdAt"], reverse=True)
        return data([shapes.job(engine, j) for j in parents[:FLOWS_LIMIT]])

    async def search(req: Request) -> Response:
        q = req.query.get("q", "")
        if not q:
            raise bad_request("q parameter is required")
        kind = state_param(req.query.get("type", "job"), SEARCH_TYPES, "type")
        if kind == "job":
            j = engine.get(q)
            visible = j is not None and api.visible(j["queue"])
            return data(shapes.job(engine, j) if visible and j is not None else None)
        if kind == "queue":
            return data([shapes.queue_summary(engine, n) for n in api.queues() if q in n])
        queue = req.query.get("queue")
        if not queue:
            raise bad_request("queue parameter is required for payload search")
        if not api.visible(queue) or not engine.has_queue(queue):
            raise not_found(f'Queue "{queue}" not found')
        ids = engine.search(q, "payload", queue, SEARCH_LIMIT)
        found = [engine.get(i) for i in ids]
        return data([shapes.job(engine, j) for j in found if j is not None])

    async def queue_metrics(req: Request) -> Response:
        queue = api.existing_queue(req)
        metrics_on()
        granularity = state_param(
            req.query.get("granularity", "minute"), ("minute", "hour"), "granularity"
        )
        # The default window is the hour before `to` (before now without one); `to`
        # defaults to now, or to `from` when that is later: a window that has not
        # started yet is empty, not an error. Only a `to` given before `from` is one.
        raw_to = req.query.get("to")
        end = parse_time(raw_to, int(time.time() * 1000))
        start = parse_time(req.query.get("from"), end - HOUR_MS)
        if raw_to in (None, ""):
            end = max(end, start)
        if start > end:
            raise bad_request("from must not be after to")
        # Times before 1970 hold no buckets: the window is cut there.
        start, end = max(0, start), max(0, end)
        rows = engine.metrics(queue, start, end + 1, GRANULARITY_MS[granularity])
        by_period: dict[int, list[tuple[int, ...]]] = {}
        out = []
        for period, name, *row in rows:
            out.append(shapes.bucket(queue, name, period, granularity, tuple(row)))
            by_period.setdefault(period, []).append(tuple(row))
        for period, group in by_period.items():
            out.append(shapes.bucket(queue, shapes.ALL_NAMES, period, granularity, merge(group)))
        out.sort(key=lambda b: (b["periodStart"], b["jobName"] != shapes.ALL_NAMES, b["jobName"]))
        return data(out)

    async def sparklines(_req: Request) -> Response:
        metrics_on()
        now = int(time.time() * 1000)
        first = now - now % MINUTE_MS - (SPARK_POINTS - 1) * MINUTE_MS
        periods = [first + i * MINUTE_MS for i in range(SPARK_POINTS)]
        finished: dict[str, list[int]] = {}
        pushed: dict[str, list[int]] = {}
        for queue in api.queues():
            done, added = [0] * SPARK_POINTS, [0] * SPARK_POINTS
            for period, _name, completed, failed, *_, pushes in engine.metrics(
                queue, first, first + SPARK_POINTS * MINUTE_MS, MINUTE_MS
            ):
                i = (period - first) // MINUTE_MS
                if 0 <= i < SPARK_POINTS:
                    done[i] += completed + failed
                    added[i] += pushes
            finished[queue], pushed[queue] = done, added
        return Response(
            200,
            orjson.dumps(
                {
                    "data": finished,
                    "meta": {
                        "granularity": "minute",
                        "periodStarts": [shapes.iso(p) for p in periods],
                        "pushed": pushed,
                    },
                }
            ),
        )

    async def metrics_status(_req: Request) -> Response:
        return data({"enabled": api.metrics_enabled})

    async def config(_req: Request) -> Response:
        return data({"readOnly": api.read_only, "authRequired": api.admission.tokens.enabled})

    api.add(
        "GET",
        "/queues/:name/groups",
        groups,
        Doc(
            "Groups with active and waiting counts",
            "Groups",
            data_of({"type": "array", "items": ref("Group")}),
            errors=(401, 404, 429),
        ),
    )
    api.add(
        "GET",
        "/flows",
        flows,
        Doc(
            "Flow parents (jobs with dependsOn), newest first, at most 100",
            "Flows",
            data_of({"type": "array", "items": ref("Job")}),
            query=(Param("state", STATE, "only parents in this state"),),
            errors=(400, 401, 429),
        ),
    )
    api.add(
        "GET",
        "/search",
        search,
        Doc(
            "Find a job by id, queues by name substring, or jobs by payload text (up to 50)",
            "Search",
            data_of(
                {
                    "anyOf": [
                        ref("Job"),  # type=job: the job, or null
                        {"type": "null"},
                        {"type": "array", "items": ref("QueueSummary")},  # type=queue
                        {"type": "array", "items": ref("Job")},  # type=payload
                    ]
                }
            ),
            query=(
                Param("q", {"type": "string", "minLength": 1}, "search term", required=True),
                Param("type", {"type": "string", "enum": list(SEARCH_TYPES)}, "default job"),
                Param("queue", {"type": "string"}, "required for type=payload"),
            ),
            errors=(400, 401, 404, 429),
        ),
    )
    iso_param = {"type": "string", "format": "date-time"}
    api.add(
        "GET",
        "/queues/:name/metrics",
        queue_metrics,
        Doc(
            "Metric buckets per job name and for __all__",
            "Metrics",
            data_of({"type": "array", "items": ref("MetricBucket")}),
            query=(
                Param("granularity", {"type": "string", "enum": ["minute", "hour"]}),
                Param("from", iso_param, "default: an hour ago"),
                Param("to", iso_param, "default: now"),
            ),
            errors=(400, 401, 404, 429),
        ),
    )
    api.add(
        "GET",
        "/metrics/sparklines",
        sparklines,
        Doc(
            "Jobs finished per minute in the last hour, per queue, zeros included "
            "(meta.periodStarts gives each point's minute)",
            "Metrics",
            ref("Sparklines"),
            errors=(400, 401, 429),
        ),
    )
    api.add(
        "GET",
        "/metrics/status",
        metrics_status,
        Doc(
            "Whether metrics are enabled",
            "Metrics",
            data_of(
                {
                    "type": "object",
                    "required": ["enabled"],
                    "properties": {"enabled": {"type": "boolean"}},
                }
            ),
            errors=(401, 429),
        ),
    )
    api.add(
        "GET",
        "/config",
        config,
        Doc(
            "What a UI needs before signing in (no auth)",
            "Config",
            data_of(
                {
                    "type": "object",
                    "required": ["readOnly", "authRequired"],
                    "properties": {
                        "readOnly": {"type": "boolean"},
                        "authRequired": {"type": "boolean"},
                    },
                }
            ),
            errors=(429,),
        ),
        auth=Auth.EXEMPT,
    )
