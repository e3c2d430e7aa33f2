"""bunqueue's protocol commands about the server process rather than the engine (Stats,
Metrics, Prometheus, and the webhooks: AddWebhook, RemoveWebhook, ListWebhooks,
SetWebhookEnabled): the protocol session hands them to the server, which knows its
uptime, rates, latencies, memory and connections, and runs the webhooks. Each answer is
the reply object as JSON, the shape of the reference's."""

from __future__ import annotations

from collections.abc import Callable
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
    elif command in _WEBHOOK_COMMANDS:
        try:
            fields = orjson.loads(request)
        except orjson.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict):
            fields = {}
        try:
            reply = _WEBHOOK_COMMANDS[command](state, fields)
        except WebhookError as e:
            reply = {"ok": False, "error": str(e)}
    else:
        reply = {"ok": False, "error": f"Unknown command: {command}"}
    return orjson.dumps(reply)


def _add_webhook(state: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    hook = state.webhooks.add(
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


def _remove_webhook(state: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    if state.webhooks.remove(req.get("webhookId")):
        return {"ok": True, "data": {"removed": True}}
    return {"ok": False, "error": "Webhook not found"}


def _list_webhooks(state: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    hooks = [h.listed() for h in state.webhooks.hooks.values()]
    return {"ok": True, "data": {"webhooks": hooks, "stats": state.webhooks.stats()}}


def _set_webhook_enabled(state: ServerState, req: dict[str, Any]) -> dict[str, Any]:
    enabled = req.get("enabled")
    if not isinstance(enabled, bool):
        raise WebhookError("enabled must be a boolean")
    if state.webhooks.set_enabled(req.get("id"), enabled):
        return {"ok": True}
    return {"ok": False, "error": "Webhook not found"}


_WEBHOOK_COMMANDS: dict[str, Callable[[ServerState, dict[str, Any]], dict[str, Any]]] = {
    "AddWebhook": _add_webhook,
    "RemoveWebhook": _remove_webhook,
    "ListWebhooks": _list_webhooks,
    "SetWebhookEnabled": _set_webhook_enabled,
}


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
