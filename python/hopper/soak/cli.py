"""`hopper soak` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hopper.argtypes import positive_float, positive_int
from hopper.extras import missing_extra
from hopper.soak.config import FAULT_KINDS, FSYNC_POLICIES, SoakConfig, parse_duration

HELP = "soak-test a job server: a hypothesis state machine, load and faults, with invariants"
DESCRIPTION = (
    "Run a property-based soak against a live server: a hypothesis state machine pushes, "
    "pulls, acks and fails jobs over HTTP and WebSocket while background producers and "
    "workers keep the server busy, and faults are injected: a worker dying mid-job, a "
    "WebSocket dropped with jobs pulled on it and, with --start, a SIGKILL of the server "
    "and a restart on the same data directory. Invariants are checked continuously: no "
    "acknowledged push lost, no job completed twice, ids unique, counts consistent, "
    "stalled and released jobs return, /stats totals monotonic, memory bounded. Prints a "
    "summary; exits 1 on a violated invariant, 2 on an error of the suite. See docs/soak.md."
)


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _faults(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown fault kind {bad[0]!r} (choose from {', '.join(FAULT_KINDS)})"
        )
    return kinds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--url", help="a running server (no SIGKILL faults then), e.g. http://127.0.0.1:6790"
    )
    target.add_argument(
        "--start",
        action="store_true",
        help="start `hopper serve` on a free loopback port and data directory; adds the "
        "SIGKILL + restart fault",
    )
    parser.add_argument(
        "-d", "--duration", type=_duration, default=60.0, help="e.g. 60s, 10m, 1h (default 60s)"
    )
    parser.add_argument(
        "--fsync",
        choices=FSYNC_POLICIES,
        default="interval",
        help="--start: the server's policy; --url: the policy to judge it by (default "
        "interval: only durable pushes are promised across a crash)",
    )
    parser.add_argument(
        "--stall-interval-ms",
        type=positive_int,
        help="the server's stall interval (default: 1000 with --start, which passes it to "
        "the server; 30000 with --url, the server's default)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="--start: data directory (default: a temp dir)"
    )
    parser.add_argument(
        "--postgres-url",
        help="--start: run three brokers of a cluster on this PostgreSQL (a fresh namespace) "
        "instead of one server; the SIGKILL fault kills the broker that owns the slot",
    )
    parser.add_argument("--token", help="bearer token of a server with AUTH_TOKENS")
    parser.add_argument(
        "--faults",
        type=_faults,
        default=FAULT_KINDS,
        help=f"comma-separated fault kinds (default: all: {','.join(FAULT_KINDS)})",
    )
    parser.add_argument(
        "--max-rss-mb", type=positive_int, default=1024, help="server RSS bound (default 1024)"
    )
    parser.add_argument(
        "--producers", type=int, default=2, help="background producer threads (default 2)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="background worker threads (default 2)"
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=50.0,
        help="pushes per second per producer (default 50)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        help="state machine steps per hypothesis example (default 20, 50 beyond 5 minutes)",
    )
    parser.add_argument(
        "--crash-gap",
        type=positive_float,
        default=2.0,
        help="--start: least seconds between two SIGKILLs (default 2)",
    )
    parser.add_argument(
        "--api-prefix", default="/api", help="the management API's prefix (default /api)"
    )
    parser.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def config_from(args: argparse.Namespace) -> SoakConfig:
    stall = args.stall_interval_ms or (1000 if args.start else 30_000)
    return SoakConfig(
        duration_s=args.duration,
        url=args.url,
        start=bool(args.start),
        token=args.token,
        fsync=args.fsync,
        stall_interval_ms=stall,
        data_dir=args.data_dir,
        max_rss_mb=args.max_rss_mb,
        producers=max(0, args.producers),
        workers=max(0, args.workers),
        rate=args.rate,
        crash_gap_s=args.crash_gap,
        api_prefix=args.api_prefix,
        steps_per_example=args.steps,
        faults=tuple(args.faults),
        postgres_url=args.postgres_url,
    )


def run(args: argparse.Namespace) -> int:
    try:
        from hopper.soak import runner
    except ImportError as e:
        return missing_extra("soak", e)
    import orjson

    config = config_from(args)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = runner.run(config, say=None if args.quiet else say)
    print(report.text(), flush=True)
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2))
    return report.exit_code
