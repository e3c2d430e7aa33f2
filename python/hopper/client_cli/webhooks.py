"""`webhook <subcommand>`: the server's webhooks (list, add, remove; enable and disable
are hopper's, bunqueue's CLI has no way to send SetWebhookEnabled)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from hopper.client_cli.arguments import Option, UsageError, choose, comma_list, parse, require

Command = dict[str, Any]
SUBCOMMANDS = ("list", "add", "remove", "enable", "disable")
# The server's list (hopper.server.webhooks.WEBHOOK_EVENTS): the client does not import
# the server.
EVENTS = ("job.pushed", "job.started", "job.completed", "job.failed", "job.progress")
_USE = "Use: " + ", ".join(SUBCOMMANDS)
_VALID = "Valid events: " + ", ".join(EVENTS)


def _add(args: Sequence[str]) -> Command:
    p = parse(args, [Option("events", "e"), Option("queue", "q"), Option("secret", "s")])
    url = require(p.positionals, 0, "url")
    listed = p.text("events")
    if not listed:
        raise UsageError(f"--events (-e) is required (comma-separated). {_VALID}")
    events = comma_list(listed)
    if not events:
        raise UsageError("At least one event must be specified")
    for event in events:
        if event not in EVENTS:
            raise UsageError(f"Invalid event: {event}. {_VALID}")
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        scheme, host = "", None
    if not scheme:
        raise UsageError(f"Invalid URL: {url}")
    if scheme not in ("http", "https"):
        raise UsageError(f"Webhook URL must use http or https protocol: {url}")
    if not host:
        raise UsageError(f"Invalid URL: {url}")
    cmd: Command = {"cmd": "AddWebhook", "url": url, "events": events}
    if queue := p.text("queue"):
        cmd["queue"] = queue
    if secret := p.text("secret"):
        cmd["secret"] = secret
    return cmd


def _enabled(enabled: bool) -> Callable[[Sequence[str]], Command]:
    def build(args: Sequence[str]) -> Command:
        return {"cmd": "SetWebhookEnabled", "id": require(args, 0, "webhookId"), "enabled": enabled}

    return build


_BUILDERS: dict[str, Callable[[Sequence[str]], Command]] = {
    "list": lambda _args: {"cmd": "ListWebhooks"},
    "add": _add,
    "remove": lambda args: {"cmd": "RemoveWebhook", "webhookId": require(args, 0, "webhookId")},
    "enable": _enabled(True),
    "disable": _enabled(False),
}


def build(args: Sequence[str]) -> Command:
    sub = args[0] if args else None
    builder = choose(
        sub, _BUILDERS, f"Missing subcommand. {_USE}", "Unknown webhook subcommand: {}. " + _USE
    )
    return builder(args[1:])  # type: ignore[no-any-return]
