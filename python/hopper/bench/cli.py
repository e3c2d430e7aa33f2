"""`hopper bench` command line: parse, start servers if asked, run, report, export."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hopper.argtypes import positive_float, positive_int
from hopper.bench import servers
from hopper.extras import missing_extra

if TYPE_CHECKING:
    from hopper.bench.runner import Options, Plan

HELP = "measure a job server's throughput and latency (HDR histograms, plots, --compare)"
DESCRIPTION = (
    "Drive a job server (hopper or any server speaking the same job API, such as the "
    "bunqueue reference) through a scenario over HTTP/1.1, WebSocket or bunqueue's TCP "
    "protocol, print a live progress line and a latency table (with the load generator's "
    "own CPU share), and export the HDR histograms (.hgrm, .hlog, JSON) and a percentile "
    "plot (PNG). The load comes from a compiled generator (many connections per thread, "
    "prebuilt requests, pipelining on WS and TCP). Closed loop by default; --rate runs an "
    "open loop on a fixed timetable with coordinated-omission correction (latency counted "
    "from each request's intended send time). --compare runs the same scenario against a "
    "second server, --rounds alternates the two."
)


# The scenario names live here, not in the runner (which needs hdrhistogram), so that
# `hopper bench --help` works on a base install without the tools extra.
SCENARIOS = ("push", "bulk", "pullack", "pullb", "e2e", "mixed")
ALIASES = {
    "pull+ack": "pullack",
    "pull-ack": "pullack",
    "pullb+ackb": "pullb",
    "pullb-ackb": "pullb",
    "end-to-end": "e2e",
    "bulk-push": "bulk",
}
DEFAULT_CONNECTIONS = {"http": 16, "ws": 1, "tcp": 1}


def _scenario(value: str) -> str:
    v = ALIASES.get(value, value)
    if v not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {value!r} (choose from push, bulk, pullack (pull+ack), "
            "pullb (pullb+ackb), e2e, mixed)"
        )
    return v


def _mix(value: str) -> tuple[int, int]:
    try:
        push, pull = (int(x) for x in value.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected PUSH:PULLACK, e.g. 3:1") from None
    if push < 0 or pull < 0 or push + pull == 0:
        raise argparse.ArgumentTypeError("two counts >= 0, not both 0")
    return push, pull


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
    target.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="with a second server: alternate the two this many times (first, second, "
        "first, ...) and report each server's runs together (default 1)",
    )

    load = parser.add_argument_group("load")
    load.add_argument(
        "-s",
        "--scenario",
        type=_scenario,
        default="push",
        help="push, bulk (bulk push, --batch jobs a request), pullack (pull+ack on a "
        "pre-filled queue), pullb (tcp: PULLB of --batch jobs, then one ACKB of them, on a "
        "pre-filled queue), e2e (push -> worker -> ack), mixed (push and pull+ack at once, "
        "--mix); default push",
    )
    load.add_argument(
        "-t",
        "--transport",
        choices=("http", "ws", "tcp"),
        default="http",
        help="http (the job API over HTTP/1.1 keep-alive), ws (/ws commands) or tcp "
        "(bunqueue's binary protocol on --tcp-port); default http",
    )
    load.add_argument(
        "--tcp-port",
        type=positive_int,
        help="-t tcp: the server's TCP port (default 6789; --start: its own)",
    )
    load.add_argument(
        "--compare-tcp-port",
        type=positive_int,
        help="-t tcp: the second server's TCP port (default 6789; --compare-start: its own)",
    )
    load.add_argument(
        "-c",
        "--connections",
        type=positive_int,
        help="connections: HTTP (default 16), WebSocket sockets or TCP (default 1)",
    )
    load.add_argument(
        "--window",
        type=positive_int,
        default=64,
        help="WS and TCP: requests in flight per connection (default 64); HTTP has one",
    )
    load.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="load generator threads, each driving its share of the connections (default 1)",
    )
    load.add_argument(
        "--workers",
        type=positive_int,
        help="e2e: worker connections pulling and acking (default: as many as producers)",
    )
    load.add_argument(
        "--payload-size",
        type=int,
        default=0,
        metavar="BYTES",
        help="job payload size as JSON (default: the standard ~90-byte payload)",
    )
    load.add_argument(
        "--queues",
        type=positive_int,
        default=1,
        metavar="N",
        help="spread the operations round-robin over N queues (default 1)",
    )
    load.add_argument(
        "--batch",
        type=positive_int,
        default=100,
        help="bulk, pullb: jobs per request (default 100)",
    )
    load.add_argument(
        "--mix",
        type=_mix,
        default=(1, 1),
        metavar="PUSH:PULLACK",
        help="mixed: ratio of pushes to pull+acks (default 1:1)",
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
        help="open loop: operations per second on a fixed timetable (in mixed, split by "
        "--mix), latency corrected for coordinated omission; closed loop without it",
    )
    load.add_argument(
        "--prefill",
        type=int,
        help="pullack, pullb: jobs to push before the run (default: enough for the run; "
        "0: none, the queue is filled already)",
    )
    load.add_argument(
        "--queue",
        help="queue name (default: a fresh bench-* queue per run; with --queues N, NAME-0 "
        "... NAME-<N-1>); a queue that already existed is never removed",
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


@dataclass
class Target:
    label: str
    url: str
    started: bool  # started for the run (stopped with everything in it)
    tcp_port: int | None


@contextlib.contextmanager
def _target(args: argparse.Namespace, second: bool) -> Iterator[Target]:
    """The first or second server, started for the run if asked."""
    url = args.compare if second else args.url
    kind = args.compare_start if second else ("hopper" if args.start else None)
    label = args.compare_label if second else args.label
    if kind is None:
        assert url is not None
        name = label or url.split("://", 1)[-1].rstrip("/")
        port = args.compare_tcp_port if second else args.tcp_port
        yield Target(name, url, False, port or 6789)
        return
    with servers.start(kind, args.peers) as srv:
        yield Target(label or kind, srv.url, True, srv.tcp_port)


@contextlib.contextmanager
def _cleanup(args: argparse.Namespace, url: str, plan: Plan, opts: Options) -> Iterator[list[str]]:
    """Obliterates the run's queues at the end (however the run ends) when the run created
    them: fresh bench-* queues, or --queue names the server did not have before the run.
    Yields the notes for the report, filled at the end."""
    from hopper.bench import runner
    from hopper.bench.runner import CommandFailed

    remove = [] if args.keep else list(plan.queues)
    if remove and args.queue is not None:
        try:
            existing = set(runner.list_queues(url, opts))
        except (CommandFailed, OSError):
            existing = set(remove)  # cannot tell whether they were there: leave them
        for q in [q for q in remove if q in existing]:
            print(f"hopper bench: queue {q} existed before the run: kept", file=sys.stderr)
            remove.remove(q)
    notes: list[str] = []
    try:
        yield notes
    finally:
        if remove:
            try:
                runner.obliterate(url, remove, opts)
                notes.append(f"{_removed(remove)} removed (--keep keeps them)")
            except (CommandFailed, OSError) as e:
                print(f"hopper bench: could not remove {', '.join(remove)}: {e}", file=sys.stderr)


def _removed(queues: list[str]) -> str:
    """What the cleanup removed, in words that agree in number; a long list of generated
    names would only push the report's table off the screen, so it is counted."""
    if len(queues) == 1:
        return f"queue {queues[0]} and its jobs"
    if len(queues) <= 3:
        return f"queues {', '.join(queues)} and their jobs"
    return f"{len(queues)} queues and their jobs"


def _queues(args: argparse.Namespace) -> list[str]:
    base = args.queue or f"bench-{args.scenario}-{uuid.uuid4().hex[:10]}"
    if args.queues == 1:
        return [base]
    return [f"{base}-{i}" for i in range(args.queues)]


def _plan(args: argparse.Namespace, opts: Options) -> Plan:
    from hopper.bench.runner import Plan

    duration = args.duration if args.count is None else None
    if args.count is None and duration is None:
        duration = 5.0
    return Plan(
        scenario=args.scenario,
        queues=_queues(args),
        workers=args.workers or opts.connections,
        warmup_s=args.warmup,
        duration_s=duration,
        count=args.count,
        rate=args.rate,
        timeout_s=args.timeout,
        prefill=args.prefill,
        payload_bytes=max(0, args.payload_size),
        batch=args.batch,
        mix=args.mix,
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

    two = bool(args.compare or args.compare_start)
    results: list[list[RunResult]] = [[], []] if two else [[]]
    try:
        with contextlib.ExitStack() as stack:
            targets = [
                stack.enter_context(_target(args, second))
                for second in (False, True)[: len(results)]
            ]
            if two and targets[1].label == targets[0].label:
                targets[1].label += "-2"
            for _ in range(args.rounds if two else 1):
                for t, out in zip(targets, results, strict=True):
                    opts = Options(
                        transport=args.transport,
                        connections=args.connections or DEFAULT_CONNECTIONS[args.transport],
                        window=args.window,
                        threads=args.threads,
                        token=args.token,
                        timeout_s=args.timeout,
                        ws_path=args.ws_path,
                        tcp_port=t.tcp_port,
                        progress=not args.quiet,
                    )
                    plan = _plan(args, opts)
                    if t.started:
                        out.append(runner.run(t.label, t.url, plan, opts))
                        continue
                    with _cleanup(args, t.url, plan, opts) as notes:
                        out.append(runner.run(t.label, t.url, plan, opts))
                    out[-1].notes.extend(notes)
    except (RuntimeError, OSError) as e:
        print(f"hopper bench: {e}", file=sys.stderr)
        return 2
    merged = [runner.merge(runs) for runs in results]
    print(report.render(merged))
    written: list[Path] = []
    if args.hgrm:
        written += exports.write_hgrm(args.hgrm, merged)
    if args.hlog:
        written += exports.write_hlog(args.hlog, merged)
    if args.json:
        written += exports.write_json(args.json, merged, shlex.join(sys.argv))
    if args.png:
        written += plot.write_png(args.png, merged)
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0 if all(rec.ok > 0 for res in merged for rec in res.series) else 1
