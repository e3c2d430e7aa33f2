"""JSON Schemas of the job server's bodies, for `/openapi.json`."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def ok_with(**props: Schema) -> Schema:
    """`{ok: true, ...props}`."""
    return {
        "type": "object",
        "required": ["ok", *props],
        "properties": {"ok": {"type": "boolean", "const": True}, **props},
    }


NULLABLE_INT = {"type": ["integer", "null"]}

COMPONENTS: dict[str, Schema] = {
    "JobServerError": {
        "type": "object",
        "required": ["ok", "error"],
        "properties": {"ok": {"type": "boolean", "const": False}, "error": {"type": "string"}},
    },
    "PushBody": {
        "type": "object",
        "properties": {
            "data": {},
            "name": {"type": "string"},
            "priority": {"type": "integer"},
            "delay": {"type": "integer", "minimum": 0},
            "maxAttempts": {"type": "integer", "minimum": 1},
            "backoff": {"type": "integer", "minimum": 0},
            "ttl": {"type": "integer", "minimum": 1},
            "timeout": {"type": "integer", "minimum": 1},
            "uniqueKey": {"type": "string"},
            "jobId": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "groupId": {"type": "string"},
            "lifo": {"type": "boolean"},
            "removeOnComplete": {"type": ["boolean", "integer"]},
            "removeOnFail": {"type": ["boolean", "integer"]},
            "durable": {"type": "boolean"},
            "dependsOn": {"type": "array", "items": {"type": "string"}},
            "repeat": {"type": "object"},
        },
    },
    "ServerJob": {
        "type": "object",
        "required": ["id", "queue", "name", "data", "priority", "createdAt", "state", "attempts"],
        "properties": {
            "id": {"type": "string"},
            "queue": {"type": "string"},
            "name": {"type": "string"},
            "data": {},
            "priority": {"type": "integer"},
            "createdAt": {"type": "integer"},
            "runAt": {"type": "integer"},
            "delay": {"type": "integer"},
            "startedAt": NULLABLE_INT,
            "completedAt": NULLABLE_INT,
            "failedAt": NULLABLE_INT,
            "attempts": {"type": "integer"},
            "maxAttempts": {"type": "integer"},
            "progress": {"type": "integer"},
            "state": {"type": "string"},
        },
    },
    "Pulled": ok_with(
        job={"oneOf": [ref("ServerJob"), {"type": "null"}]},
        token={"type": ["string", "null"]},
    ),
}
