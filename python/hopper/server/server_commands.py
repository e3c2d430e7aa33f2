"""bunqueue's protocol commands about the server process rather than the engine (Stats,
Metrics, Prometheus): the protocol session hands them to the server, which knows its
uptime, rates, latencies, memory and connections. Each answer is the reply object as
JSON, the shape of the reference's."""

from __future__ import annotations

from typing import Any

import orjson

from hopper.server import memory
from hopper.server.state import ServerState


def answer(state: ServerState, command: str, request: bytes) -> bytes:
    """The reply to `command`, whose request (JSON) is `request`."""
    reply: dict[str, Any]
    if command == "Stats":
        reply = _stats(state)
    elif command == "Metrics":
        reply = _metrics(state)
    elif command == "Prometheus":
        reply = {"ok": True, "data": {"metrics": state.metrics.render().decode()}}
    else:
        reply = {"ok": False, "error": f"Unknown command: {command}"}
    return orjson.dumps(reply)


def _stats(state: ServerState) -> dict[str, Any]:
    c, s = state.engine.counts(), state.engine.stats()
    push_rate, pull_rate = state.throughput.rates()
    return {
        "ok": True,
        "stats": {
            "waiting": c["waiting"],
            "active": c["active"],
            "delayed": c["delayed"],
            "dlq": c["failed"],
            "completed": c["completed"],
            "failed": s["failed"],
            "uptime": state.uptime_s(),
            "pushPerSec": push_rate,
            "pullPerSec": pull_rate,
        },
    }


def job_totals(state: ServerState) -> dict[str, int]:
    """The job totals since the data directory was created (bunqueue's `total*`)."""
    s = state.engine.stats()
    return {
        "totalPushed": s["pushed"],
        "totalPulled": s["pulled"],
        "totalCompleted": s["completed"],
        "totalFailed": s["failed"],
    }


def _metrics(state: ServerState) -> dict[str, Any]:
    push_ms, pull_ms, ack_ms = state.metrics.averages_ms()
    return {
        "ok": True,
        "metrics": {
            **job_totals(state),
            "avgLatencyMs": round((push_ms + pull_ms) / 2, 2),
            "avgProcessingMs": round(ack_ms, 2),
            "memoryUsageMb": memory.memory_mb()["heapUsed"],
            "sqliteSizeMb": 0,
            "activeConnections": sum(state.connections.values()),
        },
    }
