"""Which client commands exist and the protocol command each command line becomes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hopper.client_cli import core, crons, dlq, jobs, limits, queues, webhooks, workers

Command = dict[str, Any]

NETWORK_COMMANDS: dict[str, tuple[str, ...]] = {
    "push": (),
    "pull": (),
    "ack": (),
    "fail": (),
    "job": jobs.SUBCOMMANDS,
    "queue": queues.SUBCOMMANDS,
    "rate-limit": limits.SUBCOMMANDS,
    "concurrency": limits.SUBCOMMANDS,
    "dlq": dlq.SUBCOMMANDS,
    "cron": crons.SUBCOMMANDS,
    "worker": workers.SUBCOMMANDS,
    "webhook": webhooks.SUBCOMMANDS,
    "stats": (),
    "metrics": (),
    "health": (),
    "ping": (),
}
"""The commands sent to the server over TCP, with their subcommands."""
LOCAL_COMMANDS = ("version",)
"""Client commands answered without the TCP protocol."""

# `health` asks for Stats too: the reply rendered is the same statistics.
_MONITORING = {"stats": "Stats", "metrics": "Prometheus", "health": "Stats", "ping": "Ping"}


def build(command: str, args: Sequence[str]) -> Command | None:
    """The protocol command for `command args`, or None for an unknown command; raises
    UsageError for bad arguments."""
    if command == "push":
        return core.push(args)
    if command == "pull":
        return core.pull(args)
    if command == "ack":
        return core.ack(args)
    if command == "fail":
        return core.fail(args)
    if command == "job":
        return jobs.build(args)
    if command == "queue":
        return queues.build(args)
    if command == "dlq":
        return dlq.build(args)
    if command == "cron":
        return crons.build(args)
    if command == "worker":
        return workers.build(args)
    if command == "webhook":
        return webhooks.build(args)
    if command in ("rate-limit", "concurrency"):
        return limits.build(command, args)
    if command in _MONITORING:
        return {"cmd": _MONITORING[command]}
    return None
