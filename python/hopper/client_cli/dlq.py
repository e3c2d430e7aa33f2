"""`dlq <subcommand>`: a queue's dead-letter jobs: list, retry, purge."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hopper.client_cli.arguments import Option, choose, integer, parse, require

Command = dict[str, Any]
SUBCOMMANDS = ("list", "retry", "purge")
_USE = "Use: " + ", ".join(SUBCOMMANDS)


def _list(args: Sequence[str]) -> Command:
    p = parse(args, [Option("count", "c")])
    cmd: Command = {"cmd": "Dlq", "queue": require(p.positionals, 0, "queue")}
    if (count := integer(p.text("count"), "count")) is not None:
        cmd["count"] = count
    return cmd


def _retry(args: Sequence[str]) -> Command:
    p = parse(args, [Option("id")])
    cmd: Command = {"cmd": "RetryDlq", "queue": require(p.positionals, 0, "queue")}
    if id_ := p.text("id"):
        cmd["jobId"] = id_
    return cmd


_BUILDERS: dict[str, Callable[[Sequence[str]], Command]] = {
    "list": _list,
    "retry": _retry,
    "purge": lambda args: {"cmd": "PurgeDlq", "queue": require(args, 0, "queue")},
}


def build(args: Sequence[str]) -> Command:
    sub = args[0] if args else None
    builder = choose(
        sub, _BUILDERS, f"Missing subcommand. {_USE}", "Unknown dlq subcommand: {}. " + _USE
    )
    return builder(args[1:])  # type: ignore[no-any-return]
