"""Text styling for the tables: ANSI colours (only on a terminal, and not with
NO_COLOR=1, as bunqueue's CLI), JavaScript-like value printing, and padding."""

from __future__ import annotations

import json
import math
import os
import sys
import unicodedata
from datetime import datetime, timezone
from typing import Any

from hopper.client.tcp import UNDEFINED

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
RED = "\x1b[31m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
CYAN = "\x1b[36m"


def _colour_on() -> bool:
    return sys.stdout.isatty() and os.environ.get("NO_COLOR") != "1"


def color(text: str, code: str) -> str:
    return f"{code}{text}{RESET}" if _colour_on() else text


def absent(value: Any) -> bool:
    """JavaScript's null or undefined."""
    return value is None or value is UNDEFINED


def js_number(value: float | int) -> str:
    """A number as JavaScript prints it (1.0 is "1")."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def to_json(value: Any, indent: int | None = None) -> str:
    """`value` as JavaScript's JSON.stringify writes it: undefined object members are
    left out (undefined array items become null) and whole floats print as integers."""
    separators = (",", ": ") if indent is not None else (",", ":")
    return json.dumps(js_plain(value), indent=indent, separators=separators, ensure_ascii=False)


def js_plain(value: Any) -> Any:
    if value is UNDEFINED:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): js_plain(v) for k, v in value.items() if v is not UNDEFINED}
    if isinstance(value, list | tuple):
        return [js_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return {str(i): b for i, b in enumerate(value)}
    if hasattr(value, "to_datetime"):  # a msgpack Timestamp: JSON.stringify gives ISO text
        return iso_time(value.to_unix() * 1000)
    return value


def text(value: Any, fallback: str = "") -> str:
    """A value as bunqueue's CLI shows it in a table cell."""
    if absent(value):
        return fallback
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, dict | list):
        return to_json(value)
    return str(value)


def iso_time(ms: Any) -> str:
    """Epoch milliseconds as JavaScript's toISOString (UTC, millisecond precision)."""
    seconds, millis = divmod(int(ms), 1000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def width(value: str) -> int:
    """Columns `value` takes on a terminal (colour codes take none, wide glyphs two)."""
    plain = value
    for code in (RESET, BOLD, DIM, RED, GREEN, YELLOW, CYAN):
        plain = plain.replace(code, "")
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in plain)


def pad(value: str, columns: int) -> str:
    return value + " " * max(0, columns - width(value))
