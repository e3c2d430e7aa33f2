"""`hopper bench` command line (placeholder until the bench package lands)."""

from __future__ import annotations

import argparse

HELP = "not available yet"
DESCRIPTION = HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    del args
    raise SystemExit("hopper bench: not available yet")
