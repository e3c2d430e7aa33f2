"""The `hopper` command."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import hopper
from hopper.server import config

# The engine's default retention (`retention_count`, `hopper serve --retention-count`),
# named here so that the demo can say why it keeps fewer completed jobs than it worked.
DEMO_RETENTION = 10_000


def _demo(args: argparse.Namespace) -> int:
    """Runs the embedded engine through a short workload and prints what happened."""
    n = args.jobs
    with hopper.Engine(retention_count=DEMO_RETENTION) as eng:
        print(f"hopper {hopper.__version__}: embedded engine self-demo with {n} jobs")
        t0 = time.perf_counter()
        eng.push_many("demo", ({"data": {"n": i}, "priority": i % 3} for i in range(n)))
        pushed = time.perf_counter() - t0
        print(f"  pushed {n} jobs in one batch: {n / pushed:,.0f} jobs/s")
        print(f"  counts: {eng.counts('demo')}")
        t0 = time.perf_counter()
        done = failed = 0
        while (job := eng.pull("demo")) is not None:
            if job.data["n"] % 10 == 0 and job.attempts == 0:
                eng.fail(job.id, job.token, "every tenth job fails once")
                failed += 1
                eng.promote(job.id)
            else:
                eng.ack(job.id, job.token, {"ok": True})
                done += 1
        took = time.perf_counter() - t0
        print(
            f"  worked {done} jobs ({failed} failed once, then retried): {done / took:,.0f} jobs/s"
        )
        counts = eng.counts("demo")
        print(f"  counts: {counts}")
        if counts["completed"] < done:
            print(
                f"  completed: {counts['completed']:,} of the {done:,} worked are kept: "
                f"retention keeps the newest {DEMO_RETENTION:,} completed jobs per queue "
                "(retention_count; `hopper serve --retention-count`), older ones are removed"
            )
        print(f"  stats:  {eng.stats()}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from hopper.server.main import serve

    try:
        return serve(args)
    except config.ConfigError as e:
        print(f"hopper {args.command}: {e}", file=sys.stderr)
        return 2


OWN_COMMANDS = frozenset({"demo", "serve", "start", "bench", "soak"})
CLIENT_EPILOG = (
    "client commands (bunqueue's CLI over its TCP protocol): push, pull, ack, fail, job, "
    "queue, dlq, cron, worker, rate-limit, concurrency, stats, metrics, health, ping, "
    "version; `hopper push --help` describes them"
)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    from hopper.client_cli import global_options, runner

    _, words = global_options.parse_global_options(args_in, quiet=True)
    # Any command word that is not one of hopper's own goes to the client commands,
    # which answer an unknown one as bunqueue's CLI does ("Unknown command", status 1).
    if words and words[0] not in OWN_COMMANDS and not words[0].startswith("-"):
        return runner.run(*global_options.parse_global_options(args_in))
    parser = argparse.ArgumentParser(
        prog="hopper", description="hopper job queue", epilog=CLIENT_EPILOG
    )
    parser.add_argument("--version", action="version", version=f"hopper {hopper.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the embedded engine through a short workload")
    demo.add_argument("--jobs", type=int, default=100_000, help="how many jobs (default 100000)")
    demo.set_defaults(func=_demo)
    serve = sub.add_parser(
        "serve",
        aliases=["start"],
        help="run the job server (HTTP, SSE, WebSocket) on the embedded engine; `start` "
        "is the same command under `bunqueue start`'s name",
        description="Run the job server. Every flag also reads an environment variable "
        "(shown in brackets); a flag wins over its variable. `bunqueue start`'s flags "
        "(--http-port, --tcp-port, --data-path, --max-completed-jobs, "
        "--completed-retention-ms, --auth-tokens, --host) are accepted as spellings of "
        "hopper's own.",
    )
    config.add_arguments(serve)
    serve.set_defaults(func=_serve)
    # `bench` and `soak` import their optional dependencies only when run.
    from hopper.bench import cli as bench_cli
    from hopper.soak import cli as soak_cli

    bench = sub.add_parser("bench", help=bench_cli.HELP, description=bench_cli.DESCRIPTION)
    bench_cli.add_arguments(bench)
    bench.set_defaults(func=bench_cli.run)
    soak = sub.add_parser("soak", help=soak_cli.HELP, description=soak_cli.DESCRIPTION)
    soak_cli.add_arguments(soak)
    soak.set_defaults(func=soak_cli.run)
    args = parser.parse_args(args_in)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
