"""Push options as Python keyword arguments (snake_case), and the job server's push body
(camelCase) they become: one definition for `hopper.Engine.push` and every client push,
so the three cannot drift apart. Defaults are the engine's: an option not given is not
sent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict


class PushOptions(TypedDict, total=False):
    """Push options, as keyword arguments of every push method. Only those given (and
    not None) are sent; the server applies its defaults to the rest."""

    name: str
    priority: int
    delay: int
    max_attempts: int
    backoff: int
    ttl: int
    timeout: int
    unique_key: str
    job_id: str
    tags: Sequence[str]
    group_id: str
    lifo: bool
    remove_on_complete: bool | int
    remove_on_fail: bool | int
    durable: bool
    depends_on: Sequence[str]
    repeat: Mapping[str, Any]


# snake_case keyword -> the push body's field (bunqueue's HTTP API; `name` is a hopper extension).
FIELDS: dict[str, str] = {
    "name": "name",
    "priority": "priority",
    "delay": "delay",
    "max_attempts": "maxAttempts",
    "backoff": "backoff",
    "ttl": "ttl",
    "timeout": "timeout",
    "unique_key": "uniqueKey",
    "job_id": "jobId",
    "tags": "tags",
    "group_id": "groupId",
    "lifo": "lifo",
    "remove_on_complete": "removeOnComplete",
    "remove_on_fail": "removeOnFail",
    "durable": "durable",
    "depends_on": "dependsOn",
    "repeat": "repeat",
}
LIST_FIELDS = frozenset(("tags", "dependsOn"))


def as_list(value: Any) -> Any:
    """A sequence option (tags, depends_on) as a JSON list; a string is left as it is,
    for the engine to refuse by name, not split into characters."""
    return value if isinstance(value, str) else list(value)


def push_body(data: Any, options: Mapping[str, Any], what: str = "push") -> dict[str, Any]:
    """The push body for `data` and snake_case `options` (None values left out)."""
    body: dict[str, Any] = {"data": data}
    for key, value in options.items():
        field = FIELDS.get(key)
        if field is None:
            raise TypeError(f"{what}() got an unexpected keyword argument {key!r}")
        if value is not None:
            body[field] = as_list(value) if field in LIST_FIELDS else value
    return body
