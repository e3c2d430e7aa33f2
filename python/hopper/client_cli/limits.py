"""`rate-limit` and `concurrency` (`set <queue> <n>` / `clear <queue>`): a queue's limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hopper.client_cli.arguments import UsageError, integer, require

Command = dict[str, Any]
SUBCOMMANDS = ("set", "clear")
# command -> (set's protocol command, clear's, what the limit counts)
_KINDS = {
    "rate-limit": ("RateLimit", "RateLimitClear", "jobs per second"),
    "concurrency": ("SetConcurrency", "ClearConcurrency", "max concurrent jobs"),
}


def build(command: str, args: Sequence[str]) -> Command:
    set_cmd, clear_cmd, unit = _KINDS[command]
    sub = args[0] if args else None
    if not sub:
        raise UsageError(f"Missing subcommand for {command}. Use: set, clear")
    rest = args[1:]
    if sub == "set":
        queue = require(rest, 0, "queue")
        limit = integer(require(rest, 1, "limit"), "limit")
        if limit is None or limit <= 0:
            raise UsageError(f"Limit must be a positive number ({unit})")
        return {"cmd": set_cmd, "queue": queue, "limit": limit}
    if sub == "clear":
        return {"cmd": clear_cmd, "queue": require(rest, 0, "queue")}
    raise UsageError(f"Unknown {command} subcommand: {sub}. Use: set, clear")
