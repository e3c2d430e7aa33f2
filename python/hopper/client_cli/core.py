"""`push`, `pull`, `ack` and `fail`: the protocol command each sends (as bunqueue's CLI)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hopper.client_cli.arguments import (
    Option,
    UsageError,
    comma_list,
    integer,
    job_id,
    json_value,
    parse,
    require,
)

Command = dict[str, Any]

PUSH_OPTIONS = (
    Option("priority", "P"),
    Option("delay", "d"),
    Option("max-attempts"),
    Option("backoff"),
    Option("ttl"),
    Option("timeout"),
    Option("unique-key", "u"),
    Option("job-id"),
    Option("depends-on"),
    Option("tags"),
    Option("group-id", "g"),
    Option("lifo", takes_value=False),
    Option("remove-on-complete", takes_value=False),
    Option("remove-on-fail", takes_value=False),
)
_VALUE_FLAGS = frozenset(
    [f"--{o.name}" for o in PUSH_OPTIONS if o.takes_value]
    + [f"-{o.short}" for o in PUSH_OPTIONS if o.takes_value and o.short]
)
_NEGATIVE_DATA = "hopper-negative-json-data"


def _shield_negative_data(args: Sequence[str]) -> tuple[list[str], str | None]:
    """`push q -5`: a negative JSON number as the data would read as a short flag, so the
    word is swapped for a placeholder before parsing (and given back after)."""
    out = list(args)
    positionals = 0
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "--":
            break
        if arg in _VALUE_FLAGS:
            skip = True
            continue
        if arg.startswith("-"):
            if positionals != 1:
                continue
            try:
                number = json.loads(arg)
            except ValueError:
                continue
            if isinstance(number, bool) or not isinstance(number, int | float):
                continue
            out[i] = _NEGATIVE_DATA
            return out, arg
        positionals += 1
    return out, None


def push(args: Sequence[str]) -> Command:
    shielded, negative = _shield_negative_data(args)
    p = parse(shielded, PUSH_OPTIONS)
    queue = require(p.positionals, 0, "queue")
    raw = require(p.positionals, 1, "data")
    data = json_value(negative if raw == _NEGATIVE_DATA and negative else raw, "data")
    cmd: Command = {"cmd": "PUSH", "queue": queue, "name": "default", "data": data}
    if (priority := integer(p.text("priority"), "priority")) is not None:
        cmd["priority"] = priority
    if (delay := integer(p.text("delay"), "delay")) is not None:
        if delay < 0:
            raise UsageError("delay must be >= 0")
        cmd["delay"] = delay
    if (attempts := integer(p.text("max-attempts"), "max-attempts")) is not None:
        if attempts < 1:
            raise UsageError("max-attempts must be >= 1")
        cmd["maxAttempts"] = attempts
    if (backoff := integer(p.text("backoff"), "backoff")) is not None:
        cmd["backoff"] = backoff
    if (ttl := integer(p.text("ttl"), "ttl")) is not None:
        cmd["ttl"] = ttl
    if (timeout := integer(p.text("timeout"), "timeout")) is not None:
        if timeout <= 0:
            raise UsageError("timeout must be > 0")
        cmd["timeout"] = timeout
    for option, key in (("unique-key", "uniqueKey"), ("job-id", "jobId"), ("group-id", "groupId")):
        if value := p.text(option):
            cmd[key] = value
    if depends := p.text("depends-on"):
        cmd["dependsOn"] = comma_list(depends)
    if tags := p.text("tags"):
        cmd["tags"] = comma_list(tags)
    for flag, key in (
        ("lifo", "lifo"),
        ("remove-on-complete", "removeOnComplete"),
        ("remove-on-fail", "removeOnFail"),
    ):
        if p.values.get(flag):
            cmd[key] = True
    return cmd


def pull(args: Sequence[str]) -> Command:
    p = parse(args, [Option("timeout", "t")])
    # detach: the job stays active after this one-shot connection closes, so that a
    # later `ack`/`fail` (another connection) can finish it.
    cmd: Command = {"cmd": "PULL", "queue": require(p.positionals, 0, "queue"), "detach": True}
    if (timeout := integer(p.text("timeout"), "timeout")) is not None:
        cmd["timeout"] = timeout
    return cmd


def ack(args: Sequence[str]) -> Command:
    p = parse(args, [Option("result", "r")])
    cmd: Command = {"cmd": "ACK", "id": job_id(require(p.positionals, 0, "id"))}
    if result := p.text("result"):
        cmd["result"] = json_value(result, "result")
    return cmd


def fail(args: Sequence[str]) -> Command:
    p = parse(args, [Option("error", "e")])
    cmd: Command = {"cmd": "FAIL", "id": job_id(require(p.positionals, 0, "id"))}
    if error := p.text("error"):
        cmd["error"] = error
    return cmd
