"""bunqueue's protocol commands about the server process rather than the engine (Stats,
Metrics, Prometheus, and the webhooks: AddWebhook, RemoveWebhook, ListWebhooks,
SetWebhookEnabled): the protocol session hands them to the server, which knows its
uptime, rates, latencies, memory and connections, and runs the webhooks. Each answer is
the reply object as JSON, the shape of the reference's. The webhook changes
(`CHANGES`) are answered by `answer_change`, which waits for the registry's write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from hopper.server import memory
from hopper.server.state import ServerState
from hopper.server.webhooks import WebhookError


def answer(state: ServerState, command: str, request: bytes) -> bytes:
    """The reply to `command`, whose request (JSON) is `request`."""
    reply: dict[str, Any]
    if command == "Stats":
        reply = _stats(state)
    elif command == "Metrics":
        reply = _metrics(state)
    elif command == "Prometheus":
        reply = {"ok": True, "data": {"metrics": state.metrics.render().decode()}}
    elif command == "ListWebhooks":
        hooks = [h.listed() for h in state.webhooks.hooks.values()]
        reply = {"ok": True, "data": {"webhooks": hooks, "stats": state.webhooks.stats()}}
    else:
        reply = {"ok": False, "error": f"Unknown command: {command}"}
    return orjson.dumps(reply)


async def answer_change(state: ServerState, command: str, request: bytes) -> bytes:
    """The reply to the webhook change `command` (one of `CHANGES`), once written."""
    try:
        fields = orjson.loads(request)
    except orjson.JSONDecodeError:
        fields = None
    if not isinstance(fields, dict):
        fields = {}
    try:
        reply = await _CHANGES[command](state, fields)
    except WebhookError as e:
        reply = {"ok": False, "error": str(e)}
    return orjson.dumps(reply)


async def _add_webhook(state: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    hook = await state.webhooks.add(
        req.get("url"), req.get("events"), req.get("queue"), req.get("secret")
    )
    return {
        "ok": True,
        "data": {
            "webhookId": hook.id,
            "url": hook.url,
            "events": hook.events,
            "queue": hook.queue,
            "createdAt": hook.created_at,
        },
    }


async def _remove_webhook(state: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    if await state.webhooks.remove(req.get("webhookId")):
        return {"ok": True, "data": {"removed": True}}
    return {"ok": False, "error": "Webhook not found"}


async def _set_webhook_enabled(state: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    enabled = req.get("enabled")
    if not isinstance(enabled, bool):
        raise WebhookError("enabled must be a boolean")
    if await state.webhooks.set_enabled(req.get("id"), enabled):
        return {"ok": True}
    return {"ok": False, "error": "Webhook not found"}


_CHANGES: dict[str, Callable[[ServerState, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "AddWebhook": _add_webhook,
    "RemoveWebhook": _remove_webhook,
    "SetWebhookEnabled": _set_webhook_enabled,
}
CHANGES = frozenset(_CHANGES)


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
