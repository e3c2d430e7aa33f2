"""`hopper soak` command line (placeholder until the soak package lands)."""

from __future__ import annotations

import argparse

HELP = "not available yet"
DESCRIPTION = HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    del args
    raise SystemExit("hopper soak: not available yet")
