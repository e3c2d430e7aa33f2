"""Running one client command: build its protocol command, connect (and authenticate),
send it, print the reply, and choose the exit status as bunqueue's CLI does: 0 done,
1 the server refused or could not be reached, 2 the arguments were wrong."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import hopper
from hopper.client.tcp import COMMAND_TIMEOUT_S, TcpClient, TcpError
from hopper.client_cli import routing, version_info
from hopper.client_cli.arguments import UsageError
from hopper.client_cli.global_options import GlobalOptions
from hopper.client_cli.help import HELP
from hopper.client_cli.output import error_text, reply_text
from hopper.client_cli.style import to_json

OK, FAILED, USAGE = 0, 1, 2
_LONG_POLLS = ("PULL", "WaitJob")
_TRANSIENT_WORKER = (
    "Warning: worker registration is transient and expires when this CLI process exits. "
    "For persistent workers, run a long-lived process (hopper.Worker, or bunqueue's "
    "Worker class)."
)


def _say(text: str, *, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout)


def _timeout_s(cmd: dict[str, Any]) -> float:
    """30 s, or for a long poll the time the server may hold it plus 10 s."""
    wait = cmd.get("timeout") if cmd["cmd"] in _LONG_POLLS else None
    wait_ms = wait if isinstance(wait, int) else 0
    return max(COMMAND_TIMEOUT_S, (wait_ms + 10_000) / 1000)


def run(options: GlobalOptions, words: Sequence[str]) -> int:
    if options.version:
        info = {"ok": True, "version": hopper.__version__}
        _say(to_json(info, indent=2) if options.json else f"hopper v{hopper.__version__}")
        return OK
    if options.help:
        _say(to_json({"ok": True, "help": HELP}, indent=2) if options.json else HELP)
        return OK
    command, args = words[0], list(words[1:])
    if command == "version":
        report = version_info.collect(options.host, options.port + 1)
        _say(
            to_json({"ok": True, **report}, indent=2)
            if options.json
            else version_info.as_text(report)
        )
        return OK
    try:
        cmd = routing.build(command, args)
    except UsageError as e:
        _say(error_text(str(e), options.json), err=True)
        return USAGE
    if cmd is None:
        _say(error_text(f"Unknown command: {command}", options.json), err=True)
        return FAILED
    subcommand = args[0] if args and not args[0].startswith("-") else None
    try:
        with TcpClient(options.host, options.port, token=options.token) as client:
            reply = client.send(cmd, timeout=_timeout_s(cmd))
    except TcpError as e:
        _say(error_text(str(e), options.json), err=True)
        return FAILED
    if reply.get("ok") is not True:
        _say(reply_text(reply, command, options.json, subcommand), err=True)
        return FAILED
    # A wait that ran out of time is ok:true, completed:false: a failure for a script.
    if cmd["cmd"] == "WaitJob" and reply.get("completed") is False:
        _say(error_text("Job not completed within timeout", options.json), err=True)
        return FAILED
    # GetState answers state "unknown" for a missing job: reported as `job get` does.
    if cmd["cmd"] == "GetState" and reply.get("state") == "unknown":
        _say(error_text("Job not found", options.json), err=True)
        return FAILED
    _say(reply_text(reply, command, options.json, subcommand))
    if cmd["cmd"] == "RegisterWorker" and not options.json:
        _say(_TRANSIENT_WORKER, err=True)
    return OK
