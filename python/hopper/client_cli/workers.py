"""`worker <subcommand>`: the workers a server knows of (list, register, unregister)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hopper.client_cli.arguments import Option, UsageError, choose, comma_list, parse, require

Command = dict[str, Any]
SUBCOMMANDS = ("list", "register", "unregister")
_USE = "Use: " + ", ".join(SUBCOMMANDS)


def _register(args: Sequence[str]) -> Command:
    p = parse(args, [Option("queues", "q")])
    name = require(p.positionals, 0, "name")
    listed = p.text("queues")
    if not listed:
        raise UsageError("--queues (-q) is required (comma-separated queue names)")
    queues = comma_list(listed)
    if not queues:
        raise UsageError("At least one queue must be specified")
    return {"cmd": "RegisterWorker", "name": name, "queues": queues}


_BUILDERS: dict[str, Callable[[Sequence[str]], Command]] = {
    "list": lambda _args: {"cmd": "ListWorkers"},
    "register": _register,
    "unregister": lambda args: {
        "cmd": "UnregisterWorker",
        "workerId": require(args, 0, "workerId"),
    },
}


def build(args: Sequence[str]) -> Command:
    sub = args[0] if args else None
    builder = choose(
        sub, _BUILDERS, f"Missing subcommand. {_USE}", "Unknown worker subcommand: {}. " + _USE
    )
    return builder(args[1:])  # type: ignore[no-any-return]
