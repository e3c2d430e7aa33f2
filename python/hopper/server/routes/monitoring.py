"""Health, readiness, stats, metrics (JSON and Prometheus) and the debug endpoints."""

from __future__ import annotations

from typing import Any

import orjson

from hopper._engine import __version__
from hopper.server import memory, server_commands
from hopper.server.http import JSON, Request, Response, ok
from hopper.server.prometheus import CONTENT_TYPE
from hopper.server.router import Auth, Doc, Router
from hopper.server.state import ServerState

PLAIN = "text/plain; charset=utf-8"
# The health probes: GET and HEAD, no auth, no rate limit.
PROBES = frozenset({"/health", "/healthz", "/live", "/ready"})


def register(router: Router, state: ServerState) -> None:
    engine = state.engine

    async def health(_req: Request) -> Response:
        c = engine.counts()
        return ok(
            orjson.dumps(
                {
                    "ok": True,
                    "status": "healthy",
                    "uptime": state.uptime_s(),
                    "version": __version__,
                    "queues": {
                        "waiting": c["waiting"],
                        "active": c["active"],
                        "delayed": c["delayed"],
                        "completed": c["completed"],
                        "dlq": c["failed"],
                    },
                    "connections": dict(state.connections),
                    "memory": memory.memory_mb(),
                }
            )
        )

    async def live(_req: Request) -> Response:
        return Response(200, b"OK", PLAIN)

    async def ready(_req: Request) -> Response:
        # A cluster broker that lost its slot refuses every change: not ready, so that a
        # load balancer sends it nothing (docs/cluster.md).
        info = engine.storage_info() if state.config.postgres_url else None
        if info is not None and info["error"]:
            body = {"ok": False, "ready": False, "error": info["error"]}
            return Response(503, orjson.dumps(body), JSON)
        return ok(b'{"ok":true,"ready":true}')

    def collections() -> dict[str, int]:
        c, s = engine.counts(), engine.stats()
        return {
            "jobIndex": s["jobs"],
            "completedJobs": c["completed"],
            "processingTotal": c["active"],
            "queuedTotal": c["waiting"],
            "temporalIndexTotal": c["delayed"],
        }

    async def stats(_req: Request) -> Response:
        c, s = engine.counts(), engine.stats()
        push_rate, pull_rate = state.throughput.rates()
        return ok(
            orjson.dumps(
                {
                    "ok": True,
                    "stats": {
                        "queued": c["waiting"],
                        "processing": c["active"],
                        "delayed": c["delayed"],
                        "dlq": c["failed"],
                        "completed": c["completed"],
                        "waitingChildren": c["waiting-children"],
                        "uptime": state.uptime_s(),
                        "pushPerSec": push_rate,
                        "pullPerSec": pull_rate,
                        "totalPushed": s["pushed"],
                        "totalPulled": s["pulled"],
                        "totalCompleted": s["completed"],
                        "totalFailed": s["failed"],
                    },
                    "memory": {**memory.memory_mb(), "external": 0, "arrayBuffers": 0},
                    "collections": collections(),
                }
            )
        )

    async def metrics(_req: Request) -> Response:
        return ok(
            orjson.dumps(
                {
                    "ok": True,
                    "metrics": server_commands.job_totals(state),
                }
            )
        )

    async def prometheus(_req: Request) -> Response:
        return Response(200, state.metrics.render(), CONTENT_TYPE)

    async def gc(_req: Request) -> Response:
        before, after = memory.collect()
        return ok(orjson.dumps({"ok": True, "before": before, "after": after}))

    async def heapstats(_req: Request) -> Response:
        heap, top = memory.heap_objects()
        return ok(
            orjson.dumps(
                {
                    "ok": True,
                    "memory": memory.memory_mb(),
                    "heap": heap,
                    "collections": collections(),
                    "topObjectTypes": top,
                }
            )
        )

    open_probe: dict[str, Any] = {"auth": Auth.EXEMPT, "rate_limited": False}
    tag = "Monitoring"
    obj = {"type": "object"}
    text = "text/plain"
    for method, path, handler, doc, kw in (
        (
            "GET",
            "/health",
            health,
            Doc("Health, counts, connections, memory", tag, obj),
            open_probe,
        ),
        ("GET", "/healthz", live, Doc("Liveness probe", tag, content_type=text), open_probe),
        ("GET", "/live", live, Doc("Liveness probe", tag, content_type=text), open_probe),
        ("GET", "/ready", ready, Doc("Readiness probe", tag, obj), open_probe),
        ("POST", "/gc", gc, Doc("Run a garbage collection", tag, obj), open_probe),
        ("GET", "/heapstats", heapstats, Doc("Heap statistics", tag, obj), open_probe),
        ("GET", "/stats", stats, Doc("Counters and rates", tag, obj, errors=(401, 429)), {}),
        ("GET", "/metrics", metrics, Doc("Lifetime totals", tag, obj, errors=(401, 429)), {}),
        (
            "GET",
            "/prometheus",
            prometheus,
            Doc("Prometheus text format 0.0.4", tag, content_type=text, errors=(401, 429)),
            {"auth": Auth.METRICS},
        ),
    ):
        router.add(method, path, handler, doc=doc, **kw)
        # The probes also answer HEAD (the GET without its body), as load balancers send
        # it; other methods get a 405 (docs/compatibility.md).
        if path in PROBES:
            head = Doc(f"{doc.summary} (headers only)", tag, content_type=doc.content_type)
            router.add("HEAD", path, handler, doc=head, **kw)
