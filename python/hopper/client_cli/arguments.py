"""Reading a command's own arguments the way bunqueue's CLI does (Node's `parseArgs` in
its lenient mode), so that the same command lines mean the same thing to both.

Lenient means: an unknown `--flag` is a boolean (and the word after it a positional), a
string option without a value becomes `True`, `-abc` is a group of short flags whose
last may take the rest or the next word as its value, and `--` ends the options. A
malformed argument is a `UsageError`, which the CLI reports with exit status 2.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OptionValue = str | bool
_INTEGER = re.compile(r"-?\d+")
_MAX_SAFE_INTEGER = 2**53 - 1


class UsageError(Exception):
    """A command line that cannot be turned into a protocol command (exit status 2)."""


@dataclass(frozen=True)
class Option:
    """One option a command knows: its long name, short letter, and whether it takes a
    value (a string) or is a flag."""

    name: str
    short: str | None = None
    takes_value: bool = True


@dataclass
class Parsed:
    values: dict[str, OptionValue] = field(default_factory=dict)
    positionals: list[str] = field(default_factory=list)

    def text(self, name: str) -> str | None:
        """An option's value as text (a valueless string option reads as "true")."""
        value = self.values.get(name)
        if value is None:
            return None
        if value is True:
            return "true"
        return value or None


def parse(args: Sequence[str], options: Sequence[Option] = ()) -> Parsed:
    """Splits `args` into option values and positionals (see the module docstring)."""
    by_long = {o.name: o for o in options}
    by_short = {o.short: o for o in options if o.short}
    out = Parsed()
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            out.positionals.extend(rest)
            break
        if arg.startswith("--"):
            name, eq, inline = arg[2:].partition("=")
            if eq:
                out.values[name] = inline
                continue
            option = by_long.get(name)
            if option is not None and option.takes_value and rest:
                out.values[name] = rest.pop(0)
            else:
                out.values[name] = True
        elif arg.startswith("-") and len(arg) > 1:
            letters = arg[1:]
            for i, letter in enumerate(letters):
                option = by_short.get(letter)
                key = option.name if option else letter
                if option is not None and option.takes_value:
                    attached = letters[i + 1 :]
                    if attached:
                        out.values[key] = attached
                    elif rest:
                        out.values[key] = rest.pop(0)
                    else:
                        out.values[key] = True
                    break
                out.values[key] = True
        else:
            out.positionals.append(arg)
    return out


def require(args: Sequence[str], index: int, name: str) -> str:
    """The positional at `index`; missing or empty is a UsageError."""
    if index >= len(args) or not args[index]:
        raise UsageError(f"Missing required argument: {name}")
    return args[index]


def job_id(value: str, name: str = "id") -> str:
    """A job id as typed (UUIDs, numbers and custom ids alike); the server judges it."""
    if not value.strip():
        raise UsageError(f"Invalid ID for {name}: {value}")
    return value


def integer(value: str | None, name: str) -> int | None:
    """A whole number written in decimal (no exponent, no fraction), or None if absent."""
    if value is None:
        return None
    if not _INTEGER.fullmatch(value) or abs(int(value)) > _MAX_SAFE_INTEGER:
        raise UsageError(f"Invalid number for {name}: {value}")
    return int(value)


def _js_number(text: str) -> int | float:
    """A JSON number as JavaScript holds it: a whole float is an integer."""
    number = float(text)
    if math.isfinite(number) and number.is_integer() and abs(number) <= _MAX_SAFE_INTEGER:
        return int(number)
    return number


def _no_constant(text: str) -> Any:
    raise ValueError(text)


def json_value(value: str, name: str) -> Any:
    """`value` parsed as JSON (strict: no NaN or Infinity, as JavaScript's JSON.parse)."""
    try:
        return json.loads(value, parse_float=_js_number, parse_constant=_no_constant)
    except ValueError:
        raise UsageError(f"Invalid JSON for {name}: {value}") from None


def comma_list(value: str) -> list[str]:
    return [part for part in value.split(",") if part]


def choose(subcommand: str | None, builders: Mapping[str, Any], missing: str, unknown: str) -> Any:
    """The builder for `subcommand`; `missing`/`unknown` are the UsageError texts (the
    latter formatted with the subcommand)."""
    if not subcommand:
        raise UsageError(missing)
    builder = builders.get(subcommand)
    if builder is None:
        raise UsageError(unknown.format(subcommand))
    return builder
