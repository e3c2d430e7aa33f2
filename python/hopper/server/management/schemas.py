"""JSON Schemas of the management API's bodies, for `/openapi.json` (components) and the
route docs that reference them."""

from __future__ import annotations

from typing import Any

from hopper.job import STATES

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def data_of(schema: Schema) -> Schema:
    """`{data: ...}`, the success envelope."""
    return {"type": "object", "required": ["data"], "properties": {"data": schema}}


def page_of(item: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["data", "meta"],
        "properties": {"data": {"type": "array", "items": item}, "meta": ref("PageMeta")},
    }


INT = {"type": "integer"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
STATE = {
    "type": "string",
    "enum": list(STATES),
}
COUNTS = {
    "type": "object",
    "required": list(STATE["enum"]),
    "properties": {s: INT for s in STATE["enum"]},
}

COMPONENTS: dict[str, Schema] = {
    "ApiError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "enum": [
                            "BAD_REQUEST",
                            "NOT_FOUND",
                            "METHOD_NOT_ALLOWED",
                            "FORBIDDEN",
                            "UNAUTHORIZED",
                            "METRICS_DISABLED",
                            "PAYLOAD_TOO_LARGE",
                            "RATE_LIMITED",
                            "UNAVAILABLE",
                            "INTERNAL_ERROR",
                        ],
                    },
                    "message": {"type": "string"},
                },
            }
        },
    },
    "PageMeta": {
        "type": "object",
        "required": ["total", "start", "end"],
        "properties": {"total": INT, "start": INT, "end": INT},
    },
    "QueueSummary": {
        "type": "object",
        "required": ["name", "counts", "isPaused", "latestActivity", "scheduledCount"],
        "properties": {
            "name": {"type": "string"},
            "counts": COUNTS,
            "isPaused": {"type": "boolean"},
            "latestActivity": NULLABLE_TIME,
            "scheduledCount": INT,
            "oldestWaitingAt": NULLABLE_TIME,
        },
    },
    "QueueDetail": {
        "allOf": [
            ref("QueueSummary"),
            {
                "type": "object",
                "required": ["pausedNames", "limits"],
                "properties": {
                    "pausedNames": {"type": "array", "items": {"type": "string"}},
                    "limits": ref("QueueLimits"),
                },
            },
        ]
    },
    "QueueLimits": {
        "type": "object",
        "description": "hopper extension: the queue's rate and concurrency limits",
        "required": ["rateLimit", "rateLimitTtl", "concurrency", "concurrencyMaxed"],
        "properties": {
            "rateLimit": {
                "type": ["object", "null"],
                "required": ["max", "duration", "expiresAt"],
                "properties": {
                    "max": INT,
                    "duration": {"type": "integer", "description": "window, ms"},
                    "expiresAt": NULLABLE_TIME,
                },
            },
            "rateLimitTtl": {
                "type": "integer",
                "description": "-2 without a rate limit; else ms until a pull is admitted "
                "(0: now), or until the limit lifts when it has a ttl",
            },
            "concurrency": {"type": ["integer", "null"]},
            "concurrencyMaxed": {"type": "boolean"},
        },
    },
    "LogEntry": {
        "type": "object",
        "required": ["seq", "level", "message", "timestamp"],
        "properties": {
            "seq": {"type": "integer", "description": "the line's number within its job"},
            "level": {"type": "string", "enum": ["info", "warn", "error"]},
            "message": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
        },
    },
    "Worker": {
        "type": "object",
        "required": [
            "id",
            "name",
            "queues",
            "concurrency",
            "hostname",
            "pid",
            "registeredAt",
            "lastHeartbeatAt",
            "activeJobs",
            "processedJobs",
            "failedJobs",
            "status",
        ],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "queues": {"type": "array", "items": {"type": "string"}},
            "concurrency": INT,
            "hostname": {"type": ["string", "null"]},
            "pid": {"type": ["number", "null"]},
            "registeredAt": {"type": "string", "format": "date-time"},
            "lastHeartbeatAt": {"type": "string", "format": "date-time"},
            "activeJobs": INT,
            "processedJobs": INT,
            "failedJobs": INT,
            "status": {"type": "string", "enum": ["live", "warning", "stale"]},
        },
    },
    "Scheduler": {
        "type": "object",
        "description": "hopper extension: a named job scheduler (bunqueue's cron)",
        "required": [
            "name",
            "queueName",
            "jobName",
            "data",
            "schedule",
            "repeatEvery",
            "timezone",
            "priority",
            "maxLimit",
            "executions",
            "nextRunAt",
            "uniqueKey",
            "skipMissedOnRestart",
            "skipIfNoWorker",
            "preventOverlap",
            "jobOptions",
        ],
        "properties": {
            "name": {"type": "string"},
            "queueName": {"type": "string"},
            "jobName": {"type": "string", "description": "the name of the jobs it pushes"},
            "data": {"description": "the data of the jobs it pushes"},
            "schedule": {
                "type": ["string", "null"],
                "description": "cron pattern (UTC); wins over repeatEvery",
            },
            "repeatEvery": {"type": ["integer", "null"], "description": "interval, ms"},
            "timezone": {"type": ["string", "null"]},
            "priority": INT,
            "maxLimit": {
                "type": ["integer", "null"],
                "description": "at most this many runs (null: no limit)",
            },
            "executions": {"type": "integer", "description": "runs so far (skipped not counted)"},
            "nextRunAt": {**NULLABLE_TIME, "description": "null: never"},
            "uniqueKey": {"type": ["string", "null"]},
            "skipMissedOnRestart": {"type": "boolean"},
            "skipIfNoWorker": {"type": "boolean"},
            "preventOverlap": {"type": "boolean"},
            "jobOptions": {
                "type": ["object", "null"],
                "description": "push options of the jobs it pushes (maxAttempts, backoff, "
                "timeout, delay, removeOnComplete, removeOnFail)",
            },
        },
    },
    "Cluster": {
        "type": "object",
        "description": "hopper extension: the brokers on one PostgreSQL and who owns each "
        "slot (docs/cluster.md); outside cluster mode, this one server",
        "required": ["mode", "namespace", "servedBy", "now", "slots", "brokers"],
        "properties": {
            "mode": {"type": "string", "enum": ["single", "cluster"]},
            "namespace": {"type": ["string", "null"], "description": "null: single"},
            "servedBy": {
                "type": "string",
                "description": "the broker whose app answered (the slot owner: every "
                "broker's front relays to it)",
            },
            "now": {
                "type": "string",
                "format": "date-time",
                "description": "the clock the ages and leases are judged by (PostgreSQL's)",
            },
            "slots": {"type": "array", "items": ref("ClusterSlot")},
            "brokers": {"type": "array", "items": ref("Broker")},
        },
    },
    "ClusterSlot": {
        "type": "object",
        "required": [
            "slot",
            "owner",
            "epoch",
            "leaseUntil",
            "leaseRemainingMs",
            "ownerHttp",
            "ownerTcp",
        ],
        "properties": {
            "slot": INT,
            "owner": {"type": "string", "description": "the owning broker's id"},
            "epoch": {"type": "integer", "description": "+1 at every change of owner"},
            "leaseUntil": {"type": "string", "format": "date-time"},
            "leaseRemainingMs": {"type": "integer", "minimum": 0},
            "ownerHttp": {
                "type": ["string", "null"],
                "description": "host:port of the owner's backend, where fronts relay to",
            },
            "ownerTcp": {"type": ["string", "null"]},
        },
    },
    "Broker": {
        "type": "object",
        "required": ["id", "http", "tcp", "startedAt", "lastSeenAt", "status", "slots"],
        "properties": {
            "id": {"type": "string"},
            "http": {
                "type": ["string", "null"],
                "description": "host:port where clients reach it (its front)",
            },
            "tcp": {"type": ["string", "null"]},
            "startedAt": {"type": "string", "format": "date-time"},
            "lastSeenAt": {"type": "string", "format": "date-time"},
            "status": {
                "type": "string",
                "enum": ["live", "stale"],
                "description": "live: seen within 5 s",
            },
            "slots": {
                "type": "array",
                "items": INT,
                "description": "the slots it owns",
            },
        },
    },
    "Job": {
        "type": "object",
        "required": [
            "id",
            "name",
            "queueName",
            "data",
            "state",
            "attemptsMade",
            "progress",
            "returnvalue",
            "failedReason",
            "opts",
            "deduplicationKey",
            "logs",
            "stacktrace",
            "createdAt",
            "processedAt",
            "completedAt",
            "failedAt",
            "delayUntil",
            "parentId",
            "parentQueueName",
            "childrenIds",
            "pendingChildrenCount",
            "groupId",
        ],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "queueName": {"type": "string"},
            "data": {},
            "state": STATE,
            "attemptsMade": INT,
            "progress": INT,
            "returnvalue": {},
            "failedReason": {"type": ["string", "null"]},
            "opts": {"type": "object"},
            "deduplicationKey": {"type": ["string", "null"]},
            "logs": {"type": "array", "items": {"type": "string"}},
            "stacktrace": {"type": "array", "items": {"type": "string"}},
            "createdAt": {"type": "string", "format": "date-time"},
            "processedAt": NULLABLE_TIME,
            "completedAt": NULLABLE_TIME,
            "failedAt": NULLABLE_TIME,
            "delayUntil": NULLABLE_TIME,
            "parentId": {"type": ["string", "null"]},
            "parentQueueName": {"type": ["string", "null"]},
            "childrenIds": {"type": "array", "items": {"type": "string"}},
            "pendingChildrenCount": INT,
            "groupId": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "priority": INT,
        },
    },
    "Group": {
        "type": "object",
        "required": ["groupId", "activeCount", "waitingCount"],
        "properties": {"groupId": {"type": "string"}, "activeCount": INT, "waitingCount": INT},
    },
    "MetricBucket": {
        "type": "object",
        "required": [
            "queueName",
            "jobName",
            "periodStart",
            "granularity",
            "completedCount",
            "failedCount",
            "totalProcessMs",
            "minProcessMs",
            "maxProcessMs",
        ],
        "properties": {
            "queueName": {"type": "string"},
            "jobName": {"type": "string"},
            "periodStart": {"type": "string", "format": "date-time"},
            "granularity": {"type": "string", "enum": ["minute", "hour"]},
            "completedCount": INT,
            "failedCount": INT,
            "totalProcessMs": INT,
            "minProcessMs": INT,
            "maxProcessMs": INT,
            "pushedCount": {
                **INT,
                "description": "jobs created in the period (extension)",
            },
        },
    },
    "Sparklines": {
        "type": "object",
        "required": ["data", "meta"],
        "properties": {
            "data": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": INT},
            },
            "meta": {
                "type": "object",
                "required": ["granularity", "periodStarts"],
                "properties": {
                    "granularity": {"type": "string", "enum": ["minute"]},
                    "periodStarts": {
                        "type": "array",
                        "items": {"type": "string", "format": "date-time"},
                    },
                    "pushed": {
                        "type": "object",
                        "description": "per queue, jobs created in each minute (extension)",
                        "additionalProperties": {"type": "array", "items": INT},
                    },
                },
            },
        },
    },
    "JobInput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "data": {},
            "opts": {
                "type": "object",
                "properties": {
                    "priority": INT,
                    "delay": {"type": "integer", "minimum": 0},
                    "attempts": {"type": "integer", "minimum": 1},
                    "backoff": {
                        "oneOf": [
                            {"type": "integer", "minimum": 0},
                            {"type": "object", "properties": {"delay": INT, "type": {}}},
                        ]
                    },
                    "lifo": {"type": "boolean"},
                    "jobId": {"type": "string"},
                    "timeout": {"type": "integer", "minimum": 1},
                    "ttl": {"type": "integer", "minimum": 1},
                    "removeOnComplete": {"type": ["boolean", "integer"]},
                    "removeOnFail": {"type": ["boolean", "integer"]},
                    "repeat": {"type": "object"},
                    "deduplication": {"type": "object"},
                    "group": {"type": "object"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "durable": {"type": "boolean"},
                },
            },
        },
    },
    "JobEdit": {
        "type": "object",
        "properties": {"data": {}, "opts": {"type": "object", "properties": {"priority": INT}}},
    },
}
