"""`cron <subcommand>`: scheduled jobs: list, add (upsert), delete."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hopper.client_cli.arguments import (
    Option,
    UsageError,
    choose,
    integer,
    json_value,
    parse,
    require,
)

Command = dict[str, Any]
SUBCOMMANDS = ("list", "add", "delete")
_USE = "Use: " + ", ".join(SUBCOMMANDS)
ADD_OPTIONS = (
    Option("queue", "q"),
    Option("data", "d"),
    Option("schedule", "s"),
    Option("every", "e"),
    Option("priority", "P"),
    Option("max-limit"),
    Option("timezone", "z"),
)


def _add(args: Sequence[str]) -> Command:
    p = parse(args, ADD_OPTIONS)
    name = require(p.positionals, 0, "name")
    queue, data = p.text("queue"), p.text("data")
    schedule, every_text = p.text("schedule"), p.text("every")
    if not queue:
        raise UsageError("--queue (-q) is required")
    if not data:
        raise UsageError("--data (-d) is required (JSON string)")
    if not schedule and not every_text:
        raise UsageError("Either --schedule (-s) or --every (-e) is required")
    cmd: Command = {"cmd": "Cron", "name": name, "queue": queue, "data": json_value(data, "data")}
    if schedule:
        cmd["schedule"] = schedule
    if (every := integer(every_text, "every")) is not None:
        # A zero or negative interval would make the cron due on every scheduler tick.
        if every <= 0:
            raise UsageError(f"Invalid every: {every}. Must be a positive interval in ms")
        cmd["repeatEvery"] = every
    if (priority := integer(p.text("priority"), "priority")) is not None:
        cmd["priority"] = priority
    if (max_limit := integer(p.text("max-limit"), "max-limit")) is not None:
        if max_limit < 0:
            raise UsageError(f"Invalid max-limit: {max_limit}. Must be >= 0 (0 = unlimited)")
        if max_limit > 0:  # 0 = unlimited: not sent, so the server stores no limit
            cmd["maxLimit"] = max_limit
    if timezone := p.text("timezone"):
        cmd["timezone"] = timezone
    return cmd


_BUILDERS: dict[str, Callable[[Sequence[str]], Command]] = {
    "list": lambda _args: {"cmd": "CronList"},
    "add": _add,
    "delete": lambda args: {"cmd": "CronDelete", "name": require(args, 0, "name")},
}


def build(args: Sequence[str]) -> Command:
    sub = args[0] if args else None
    builder = choose(
        sub, _BUILDERS, f"Missing subcommand. {_USE}", "Unknown cron subcommand: {}. " + _USE
    )
    return builder(args[1:])  # type: ignore[no-any-return]
