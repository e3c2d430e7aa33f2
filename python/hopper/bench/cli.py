"""`hopper bench` command line: parse, start servers if asked, run, report, export."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hopper.argtypes import positive_float, positive_int
from hopper.bench import servers
from hopper.extras import missing_extra

if TYPE_CHECKING:
    from hopper.bench.runner import Options
    from hopper.bench.scenarios import Plan

HELP = "measure a job server's throughput and latency (HDR histograms, plots, --compare)"
DESCRIPTION = (
    "Drive a job server (hopper or any server speaking the same job API, such as the "
    "bunqueue reference) through a scenario over HTTP or WebSocket, print a live progress "
    "line and a latency table, and export the HDR histograms (.hgrm, .hlog, JSON) and a "
    "percentile plot (PNG). Closed loop by default; --rate runs an open loop on a fixed "
    "timetable with coordinated-omission correction (latency counted from each request's "
    "intended send time). --compare runs the same scenario against a second server."
)


# The scenario names live here, not in `scenarios` (which needs hdrhistogram), so that
# `hopper bench --help` works on a base install without the tools extra.
SCENARIOS = ("push", "pullack", "e2e", "mixed")
ALIASES = {"pull+ack": "pullack", "pull-ack": "pullack", "end-to-end": "e2e"}


def _scenario(value: str) -> str:
    v = ALIASES.get(value, value)
    if v not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {value!r} (choose from push, pullack (pull+ack), e2e, mixed)"
        )
    return v


def _non_negative(value: str) -> float:
    x = float(value)
    if not x >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return x


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("servers")
    first = target.add_mutually_exclusive_group(required=True)
    first.add_argument("--url", help="a running server, e.g. http://127.0.0.1:6790")
    first.add_argument(
        "--start",
        action="store_true",
        help="start `hopper serve --memory` on a free loopback port (stopped at the end)",
    )
    second = target.add_mutually_exclusive_group()
    second.add_argument("--compare", metavar="URL2", help="also run against this server")
    second.add_argument(
        "--compare-start",
        choices=servers.KINDS,
        help="also run against a server started for it: hopper, or reference "
        "(bunqueue from --peers)",
    )
    target.add_argument("--label", help="name of the first server in the report")
    target.add_argument("--compare-label", help="name of the second server in the report")
    target.add_argument(
        "--peers",
        type=Path,
        help="bench/peers directory with the reference server (default: ./bench/peers)",
    )
    target.add_argument("--token", help="bearer token (AUTH_TOKENS) for both servers")

    load = parser.add_argument_group("load")
    load.add_argument(
        "-s",
        "--scenario",
        type=_scenario,
        default="push",
        help="push, pullack (pull+ack on a pre-filled queue), e2e (push -> worker -> ack), "
        "mixed (push and pull+ack at once); default push",
    )
    load.add_argument("-t", "--transport", choices=("http", "ws"), default="http")
    load.add_argument(
        "-c",
        "--connections",
        type=positive_int,
        help="HTTP connections (default 16) or WebSocket sockets (default 1)",
    )
    load.add_argument(
        "--window",
        type=positive_int,
        default=64,
        help="WebSocket commands in flight per socket (default 64)",
    )
    load.add_argument(
        "--workers",
        type=positive_int,
        help="e2e: worker lanes pulling and acking (default: as many as producer lanes)",
    )
    extent = load.add_mutually_exclusive_group()
    extent.add_argument(
        "-d", "--duration", type=positive_float, help="measured seconds (default 5)"
    )
    extent.add_argument("-n", "--count", type=positive_int, help="measured operations")
    load.add_argument(
        "--warmup", type=_non_negative, default=1.0, help="unmeasured seconds first (default 1)"
    )
    load.add_argument(
        "--rate",
        type=positive_float,
        help="open loop: operations per second on a fixed timetable (per side in mixed), "
        "latency corrected for coordinated omission; closed loop without it",
    )
    load.add_argument(
        "--prefill",
        type=int,
        help="pullack: jobs to push before the run (default: enough for the run)",
    )
    load.add_argument(
        "--queue",
        help="queue name (default: a fresh bench-* queue per run); a queue that already "
        "existed is never removed",
    )
    load.add_argument(
        "--keep",
        action="store_true",
        help="leave the run's queue and its jobs on a --url/--compare server (by default "
        "the queues the run created are obliterated at the end)",
    )
    load.add_argument("--timeout", type=positive_float, default=10.0, help="per-request timeout, s")
    load.add_argument("--ws-path", default="/ws", help="WebSocket path (default /ws)")
    load.add_argument("-q", "--quiet", action="store_true", help="no live progress line")

    out = parser.add_argument_group("exports")
    out.add_argument(
        "--hgrm",
        type=Path,
        help="HdrHistogram percentile distribution (ms); with several histograms the "
        "others go to FILE's stem + .<server>.<series>[.uncorrected].hgrm",
    )
    out.add_argument(
        "--hlog", type=Path, help="HdrHistogram log: one tagged compressed histogram a line"
    )
    out.add_argument("--json", type=Path, help="summary, config and encoded histograms")
    out.add_argument("--png", type=Path, help="percentile plot (both servers with --compare)")


@contextlib.contextmanager
def _target(args: argparse.Namespace, second: bool) -> Iterator[tuple[str, str, bool]]:
    """(label, url, started) of the first or second server, started for the run if
    asked."""
    url = args.compare if second else args.url
    kind = args.compare_start if second else ("hopper" if args.start else None)
    label = args.compare_label if second else args.label
    if kind is None:
        assert url is not None
        yield label or url.split("://", 1)[-1].rstrip("/"), url, False
        return
    with servers.start(kind, args.peers) as srv:
        yield label or kind, srv.url, True


@contextlib.contextmanager
def _cleanup(args: argparse.Namespace, url: str, plan: Plan, opts: Options) -> Iterator[list[str]]:
    """Obliterates the run's queue at the end (however the run ends) when the run created
    it: a fresh bench-* queue, or a --queue the server did not have before the run.
    Yields the notes for the report, filled at the end."""
    from hopper.bench import runner
    from hopper.bench.transport import RequestFailed

    remove = not args.keep
    if remove and args.queue is not None:
        try:
            remove = plan.queue not in runner.list_queues(url, opts)
        except (RuntimeError, RequestFailed, OSError):
            remove = False  # cannot tell whether it was there: leave it
        if not remove:
            print(f"hopper bench: queue {plan.queue} existed before the run: kept", file=sys.stderr)
    notes: list[str] = []
    try:
        yield notes
    finally:
        if remove:
            try:
                runner.obliterate(url, [plan.queue], opts)
                notes.append(f"queue {plan.queue} and its jobs removed (--keep keeps them)")
            except (RuntimeError, RequestFailed, OSError) as e:
                print(f"hopper bench: could not remove queue {plan.queue}: {e}", file=sys.stderr)


def _plan(args: argparse.Namespace, opts: Options) -> Plan:
    from hopper.bench.runner import lanes_per_side
    from hopper.bench.scenarios import Plan

    lanes = lanes_per_side(opts)
    duration = args.duration if args.count is None else None
    if args.count is None and duration is None:
        duration = 5.0
    return Plan(
        scenario=args.scenario,
        queue=args.queue or f"bench-{args.scenario}-{uuid.uuid4().hex[:10]}",
        lanes=lanes,
        workers=args.workers or lanes,
        warmup_s=args.warmup,
        duration_s=duration,
        count=args.count,
        rate=args.rate,
        timeout_s=args.timeout,
        prefill=args.prefill,
    )


def run(args: argparse.Namespace) -> int:
    try:
        from hopper.bench import exports, report, runner
        from hopper.bench.runner import Options, RunResult

        if args.png:
            import matplotlib  # noqa: F401  # checked before the run, used by plot
    except ImportError as e:
        return missing_extra("bench", e)
    from hopper.bench import plot

    opts = Options(
        transport=args.transport,
        connections=args.connections or (16 if args.transport == "http" else 1),
        window=args.window,
        token=args.token,
        timeout_s=args.timeout,
        ws_path=args.ws_path,
        progress=not args.quiet,
    )
    results: list[RunResult] = []
    sides = [False, True] if (args.compare or args.compare_start) else [False]
    try:
        for second in sides:
            with _target(args, second) as (label, url, started):
                if results and label == results[0].label:
                    label += "-2"
                plan = _plan(args, opts)
                if started:  # the server is stopped with everything in it
                    results.append(runner.run(label, url, plan, opts))
                    continue
                with _cleanup(args, url, plan, opts) as notes:
                    results.append(runner.run(label, url, plan, opts))
                results[-1].notes.extend(notes)
    except (RuntimeError, OSError) as e:
        print(f"hopper bench: {e}", file=sys.stderr)
        return 2
    print(report.render(results))
    written: list[Path] = []
    if args.hgrm:
        written += exports.write_hgrm(args.hgrm, results)
    if args.hlog:
        written += exports.write_hlog(args.hlog, results)
    if args.json:
        written += exports.write_json(args.json, results, shlex.join(sys.argv))
    if args.png:
        written += plot.write_png(args.png, results)
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0 if all(rec.ok > 0 for res in results for rec in res.recorders) else 1
