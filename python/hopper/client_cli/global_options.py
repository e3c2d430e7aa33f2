"""The options every client command takes, wherever they appear on the line: `-H/--host`,
`-p/--port` (the TCP port), `-t/--token`, `--json`, `--help`, `--version`, with bunqueue's
environment fallbacks (HOST, TCP_PORT, BQ_TOKEN and their BUNQUEUE_/BQ_ spellings)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6789
_LEADING_INT = re.compile(r"\s*([+-]?\d+)")
_ATTACHED_SHORT = re.compile(r"-[Hpthv][^-\s]")


@dataclass
class GlobalOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    json: bool = False
    help: bool = False
    version: bool = False


def _warn(message: str) -> None:
    if _warnings_on:
        print(message, file=sys.stderr)


_warnings_on = True


def _port(text: str) -> int | None:
    """A port as JavaScript's parseInt reads it (leading digits), if within 1..65535."""
    match = _LEADING_INT.match(text)
    if match is None:
        return None
    value = int(match.group(1))
    return value if 1 <= value <= 65535 else None


def _fallback_port(previous: int | None) -> int | None:
    """After an invalid port: the default if a port was given before (it stays given),
    else none given, so that TCP_PORT still applies (as bunqueue's CLI does)."""
    return DEFAULT_PORT if previous is not None else None


def _owns_short_t(command_args: Sequence[str]) -> bool:
    """`pull` and `job wait` take `-t` as their own --timeout."""
    head = list(command_args[:2])
    return head[:1] == ["pull"] or head == ["job", "wait"]


def _env_port(env: Mapping[str, str], current: int) -> int:
    text = env.get("TCP_PORT") or env.get("BUNQUEUE_TCP_PORT") or env.get("BQ_TCP_PORT")
    if not text:
        return current
    port = _port(text)
    if port is None:
        _warn(f'Warning: Invalid env port "{text}". Using {current}.')
        return current
    return port


def _env_token(env: Mapping[str, str]) -> str | None:
    return env.get("BQ_TOKEN") or env.get("BUNQUEUE_TOKEN") or None


def parse_global_options(
    argv: Sequence[str], env: Mapping[str, str] | None = None, *, quiet: bool = False
) -> tuple[GlobalOptions, list[str]]:
    """Takes the global options out of `argv`; returns them and the command's words.
    Malformed options are warned about on stderr unless `quiet` (a first look, to tell
    client commands from `hopper serve` and the others)."""
    global _warnings_on
    _warnings_on = not quiet
    env = os.environ if env is None else env
    opts = GlobalOptions()
    host: str | None = None
    port: int | None = None
    token: str | None = None
    words: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        following = argv[i + 1] if i + 1 < len(argv) else None
        has_value = following is not None and not following.startswith("-")
        if arg == "--":
            words.extend(argv[i + 1 :])
            break
        if arg in ("--host", "-H"):
            if has_value:
                host, i = following, i + 1
            else:
                _warn("Warning: --host requires a value. Using localhost.")
        elif arg in ("--port", "-p"):
            if not has_value:
                _warn("Warning: --port requires a value. Using default port 6789.")
            else:
                assert following is not None
                i += 1
                previous, port = port, _port(following)
                if port is None:
                    _warn(f'Warning: Invalid port "{following}". Using default port 6789.')
                    port = _fallback_port(previous)
        elif arg in ("--token", "-t"):
            if arg == "-t" and _owns_short_t(words):
                words.append(arg)
            elif has_value:
                token, i = following, i + 1
            else:
                _warn("Warning: --token requires a value. Token not set.")
        elif arg == "--json":
            opts.json = True
        elif arg == "--help" or (arg == "-h" and not words):
            opts.help = True
        elif arg == "--version" or (arg == "-v" and not words):
            opts.version = True
        elif arg.startswith("--host="):
            host = arg[len("--host=") :]
        elif arg.startswith("--port="):
            text = arg[len("--port=") :]
            previous, port = port, _port(text)
            if port is None:
                _warn(f'Warning: Invalid port "{text}". Using default port 6789.')
                port = _fallback_port(previous)
        elif arg.startswith("--token="):
            if value := arg[len("--token=") :]:
                token = value
            else:
                _warn("Warning: --token= requires a value. Token not set.")
        else:
            if _ATTACHED_SHORT.match(arg) and not (arg.startswith("-t") and _owns_short_t(words)):
                _warn(
                    f'Warning: "{arg}" looks like a short flag with an attached value; '
                    f'use the separated form ("{arg[:2]} {arg[2:]}") or the long form.'
                )
            words.append(arg)
        i += 1
    opts.host = (
        host
        if host is not None
        else env.get("HOST") or env.get("BUNQUEUE_HOST") or env.get("BQ_HOST") or DEFAULT_HOST
    )
    opts.port = port if port is not None else _env_port(env, DEFAULT_PORT)
    opts.token = token or _env_token(env)
    return opts, words
