"""`job <subcommand>`: one job's details, state and result, and the changes made to it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hopper.client_cli.arguments import (
    Option,
    UsageError,
    choose,
    integer,
    job_id,
    json_value,
    parse,
    require,
)

Command = dict[str, Any]
SUBCOMMANDS = (
    "get",
    "state",
    "result",
    "cancel",
    "progress",
    "update",
    "priority",
    "promote",
    "delay",
    "discard",
    "logs",
    "log",
    "wait",
)
_USE = "Use: " + ", ".join(SUBCOMMANDS)
LOG_LEVELS = ("info", "warn", "error")


def _by_id(cmd: str) -> Callable[[Sequence[str]], Command]:
    """A subcommand whose only argument is the job id."""

    def build(args: Sequence[str]) -> Command:
        return {"cmd": cmd, "id": job_id(require(args, 0, "id"))}

    return build


def _progress(args: Sequence[str]) -> Command:
    p = parse(args, [Option("message", "m")])
    id_ = job_id(require(p.positionals, 0, "id"))
    progress = integer(require(p.positionals, 1, "progress"), "progress")
    if progress is None or not 0 <= progress <= 100:
        raise UsageError("Progress must be a number between 0 and 100")
    cmd: Command = {"cmd": "Progress", "id": id_, "progress": progress}
    if message := p.text("message"):
        cmd["message"] = message
    return cmd


def _update(args: Sequence[str]) -> Command:
    id_ = job_id(require(args, 0, "id"))
    return {"cmd": "Update", "id": id_, "data": json_value(require(args, 1, "data"), "data")}


def _priority(args: Sequence[str]) -> Command:
    id_ = job_id(require(args, 0, "id"))
    priority = integer(require(args, 1, "priority"), "priority")
    return {"cmd": "ChangePriority", "id": id_, "priority": priority}


def _delay(args: Sequence[str]) -> Command:
    id_ = job_id(require(args, 0, "id"))
    delay = integer(require(args, 1, "delay"), "delay")
    if delay is None or delay < 0:
        raise UsageError("Delay must be a positive number in milliseconds")
    return {"cmd": "MoveToDelayed", "id": id_, "delay": delay}


def _log(args: Sequence[str]) -> Command:
    p = parse(args, [Option("level", "l")])
    id_ = job_id(require(p.positionals, 0, "id"))
    message = require(p.positionals, 1, "message")
    level = p.text("level") or "info"
    if level not in LOG_LEVELS:
        raise UsageError(f"Invalid log level: {level}. Must be info, warn, or error")
    return {"cmd": "AddLog", "id": id_, "message": message, "level": level}


def _wait(args: Sequence[str]) -> Command:
    p = parse(args, [Option("timeout", "t")])
    cmd: Command = {"cmd": "WaitJob", "id": job_id(require(p.positionals, 0, "id"))}
    if (timeout := integer(p.text("timeout"), "timeout")) is not None:
        if timeout < 0:
            raise UsageError(f"Invalid timeout: {timeout}. Must be >= 0 ms")
        cmd["timeout"] = timeout
    return cmd


_BUILDERS: dict[str, Callable[[Sequence[str]], Command]] = {
    "get": _by_id("GetJob"),
    "state": _by_id("GetState"),
    "result": _by_id("GetResult"),
    "cancel": _by_id("Cancel"),
    "progress": _progress,
    "update": _update,
    "priority": _priority,
    "promote": _by_id("Promote"),
    "delay": _delay,
    "discard": _by_id("Discard"),
    "logs": _by_id("GetLogs"),
    "log": _log,
    "wait": _wait,
}


def build(args: Sequence[str]) -> Command:
    sub = args[0] if args else None
    builder = choose(
        sub, _BUILDERS, f"Missing subcommand. {_USE}", "Unknown job subcommand: {}. " + _USE
    )
    return builder(args[1:])  # type: ignore[no-any-return]
