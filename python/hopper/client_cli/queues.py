"""`queue <subcommand>`: listing, pausing, emptying and inspecting whole queues."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hopper.client_cli.arguments import Option, UsageError, choose, integer, parse, require

Command = dict[str, Any]
SUBCOMMANDS = ("list", "pause", "resume", "drain", "obliterate", "clean", "count", "jobs", "paused")
_USE = "Use: " + ", ".join(SUBCOMMANDS)
STATES = ("waiting", "delayed", "active", "completed", "failed")
"""The states `clean` and `jobs` accept (as bunqueue's CLI)."""


def _by_queue(cmd: str) -> Callable[[Sequence[str]], Command]:
    def build(args: Sequence[str]) -> Command:
        return {"cmd": cmd, "queue": require(args, 0, "queue")}

    return build


def _state(value: str | None) -> str | None:
    if value and value not in STATES:
        raise UsageError(f"Invalid state: {value}. Must be one of: {', '.join(STATES)}")
    return value


def _clean(args: Sequence[str]) -> Command:
    p = parse(args, [Option("grace", "g"), Option("state", "s"), Option("limit", "l")])
    queue = require(p.positionals, 0, "queue")
    grace = integer(p.text("grace"), "grace")
    if grace is None:
        raise UsageError("--grace is required for clean command (time in milliseconds)")
    if grace < 0:
        raise UsageError("grace must be >= 0")
    state = _state(p.text("state"))
    cmd: Command = {"cmd": "Clean", "queue": queue, "grace": grace}
    if state:
        cmd["state"] = state
    if (limit := integer(p.text("limit"), "limit")) is not None:
        cmd["limit"] = limit
    return cmd


def _jobs(args: Sequence[str]) -> Command:
    p = parse(args, [Option("state", "s"), Option("limit", "l"), Option("offset", "o")])
    queue = require(p.positionals, 0, "queue")
    state = _state(p.text("state"))
    cmd: Command = {"cmd": "GetJobs", "queue": queue}
    if state:
        cmd["state"] = state
    if (limit := integer(p.text("limit"), "limit")) is not None:
        if limit <= 0:
            raise UsageError("limit must be > 0")
        cmd["limit"] = limit
    if (offset := integer(p.text("offset"), "offset")) is not None:
        if offset < 0:
            raise UsageError("offset must be >= 0")
        cmd["offset"] = offset
    return cmd


_BUILDERS: dict[str, Callable[[Sequence[str]], Command]] = {
    "list": lambda _args: {"cmd": "ListQueues"},
    "pause": _by_queue("Pause"),
    "resume": _by_queue("Resume"),
    "drain": _by_queue("Drain"),
    "obliterate": _by_queue("Obliterate"),
    "clean": _clean,
    "count": _by_queue("Count"),
    "jobs": _jobs,
    "paused": _by_queue("IsPaused"),
}


def build(args: Sequence[str]) -> Command:
    sub = args[0] if args else None
    builder = choose(
        sub, _BUILDERS, f"Missing subcommand. {_USE}", "Unknown queue subcommand: {}. " + _USE
    )
    return builder(args[1:])  # type: ignore[no-any-return]
