"""One soak run: start (or reach) the server, start the load, run hypothesis batches of
the state machine until the duration is used, make sure every fault kind was injected
at least once, verify everything still tracked, clean up, and report."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from hopper.server_process import ServerProcess
from hopper.soak.api import HttpApi
from hopper.soak.checks import Tally
from hopper.soak.cluster import SoakCluster
from hopper.soak.config import SoakConfig
from hopper.soak.context import SoakContext
from hopper.soak.errors import Unavailable, Violation
from hopper.soak.ledger import IdRegistry, Ledger
from hopper.soak.load import Load
from hopper.soak.machine import SoakMachine
from hopper.soak.report import Report

Say = Callable[[str], None]
ROTATE_EVERY = 2000  # load jobs per load queue (far below the server's retention)


def steps_per_example(config: SoakConfig) -> int:
    if config.steps_per_example:
        return config.steps_per_example
    return 20 if config.duration_s <= 300 else 50


def hypothesis_settings(config: SoakConfig, examples: int) -> settings:
    """Generation only: no shrinking or replay (a live server cannot be rewound); the
    deadline bounds one example (its steps include restarts and stall waits)."""
    steps = steps_per_example(config)
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=timedelta(seconds=max(60.0, steps * 10.0)),
        phases=[Phase.generate],
        database=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
    )


def bound_machine(ctx: SoakContext) -> type[SoakMachine]:
    class Bound(SoakMachine):
        def __init__(self) -> None:
            super().__init__(ctx)

    return Bound


def _explore(ctx: SoakContext) -> None:
    """Hypothesis batches sized from the time left and the measured example time."""
    per_example = 2.0
    machine = bound_machine(ctx)
    while not ctx.stopped:
        left = ctx.deadline - time.monotonic()
        batch = max(1, min(100, int(left / per_example)))
        t0, n0 = time.monotonic(), ctx.examples
        try:
            run_state_machine_as_test(machine, settings=hypothesis_settings(ctx.config, batch))
        except Exception as e:  # hypothesis itself (a deadline, a health check)
            ctx.fail(e)
            return
        if ctx.examples > n0:
            per_example = max(0.05, (time.monotonic() - t0) / (ctx.examples - n0))


def _cover_faults(ctx: SoakContext) -> None:
    """A directed pass for fault kinds the random steps did not pick, so that each kind
    is injected at least once per run, and for a given-up lease when none was seen to
    come back (random server kills can adopt every one before it is due). Kills go
    first: a later kill would adopt the directed worker's job unchecked."""
    missing = [k for k, n in ctx.faults.items() if n == 0]
    if "worker-dies" in ctx.faults and not ctx.tally.counts["stalled-jobs-return"]:
        missing.append("worker-dies")
    if not missing or ctx.failure is not None:
        return
    ctx.overtime = True
    m = SoakMachine(ctx)
    try:
        if "server-kill" in missing:
            m.inject_server_kill()
        if "connection-drop" in missing:
            m.inject_connection_drop(q=1, n=2)
        if "worker-dies" in missing:
            # Retired by the teardown; `_finish` waits until it is due and checks it.
            m.inject_worker_dies(q=0)
        m.check_all()
    finally:
        m.teardown()


def _finish(ctx: SoakContext, load: Load) -> None:
    """Stops the load, waits (bounded) for given-up leases, verifies every job still
    tracked, and removes every queue the run created."""
    ctx.overtime = True
    load.stop()
    if ctx.current is not None:
        ctx.retired.append(ctx.current)
        ctx.current = None
    ctx.checked(lambda: ctx.sweep(wait=True))

    def load_queues() -> None:
        for queue in load.ledger.queues():
            load.retire(ctx.api, queue)

    ctx.checked(load_queues)
    ctx.checked(lambda: ctx.periodic(force=True))


def _progress(ctx: SoakContext, say: Say, stop: threading.Event, every: float) -> None:
    t0 = time.monotonic()
    while not stop.wait(every):
        faults = ", ".join(f"{k} {v}" for k, v in ctx.faults.items())
        say(
            f"soak: {time.monotonic() - t0:.0f} s, {ctx.examples} examples, {ctx.steps} steps, "
            f"{ctx.load.ledger.pushed} load jobs, faults: {faults}, checks {ctx.tally.total()}"
        )


def run(
    config: SoakConfig,
    *,
    say: Say | None = None,
    progress_every: float = 10.0,
    transport: Any = None,
    seed: int | None = None,
) -> Report:
    """Runs the soak; never raises for what the server does (see the report)."""
    t0 = time.monotonic()
    report = Report(
        started=config.start,
        fsync=config.fsync,
        stall_interval_ms=config.stall_interval_ms,
        duration_s=config.duration_s,
        max_rss_mb=config.max_rss_mb,
        faults={k: 0 for k in config.fault_kinds},
    )
    own_dir: Path | None = None
    server: ServerProcess | SoakCluster | None = None
    if config.start:
        if config.data_dir is None:
            own_dir = Path(tempfile.mkdtemp(prefix="hopper-soak-"))
        base = config.data_dir or (own_dir / "data" if own_dir else Path("data"))
        log = config.server_log or (own_dir or base.parent) / "soak-server.log"
        args = ["--fsync", config.fsync, "--stall-interval-ms", str(config.stall_interval_ms)]
        if config.postgres_url:
            server = SoakCluster(config.postgres_url, args, log.parent)
            report.server_log = str(log.parent)
        else:
            server = ServerProcess.hopper(["--data-dir", str(base), *args], log=log)
            report.data_dir, report.server_log = str(base), str(log)
        try:
            server.start(retry=True)
        except RuntimeError as e:
            report.result, report.error = "ERROR", str(e)
            report.elapsed_s = time.monotonic() - t0
            return report
    url = server.url if server else str(config.url)
    report.url = url
    api = HttpApi(url, config.token, api_prefix=config.api_prefix, transport=transport)
    run_id = uuid.uuid4().hex[:8]
    ids, tally = IdRegistry(), Tally()
    ledger = Ledger(
        always=config.fsync == "always", run_id=run_id, ids=ids, rotate_every=ROTATE_EVERY
    )
    ctx_box: list[SoakContext] = []
    load = Load(
        config,
        url,
        ledger,
        lambda e: ctx_box[0].fail(e),
        tally.add,
        seed=seed if seed is not None else int(run_id, 16) % 10_000,
        transport=transport,
    )
    ctx = SoakContext(config, api, server, load, tally, run_id, t0 + config.duration_s)
    ctx_box.append(ctx)
    stop_progress = threading.Event()
    try:
        try:
            ctx.stats.reset(api)
            ctx.memory.check(api, tally)
        except Unavailable as e:
            report.result, report.error = "ERROR", f"cannot reach {url}: {e}"
            report.elapsed_s = time.monotonic() - t0
            return report
        load.start()
        if say is not None and progress_every > 0:
            threading.Thread(
                target=_progress, args=(ctx, say, stop_progress, progress_every), daemon=True
            ).start()
        _explore(ctx)
        ctx.checked(lambda: _cover_faults(ctx))
        _finish(ctx, load)
    except BaseException as e:  # KeyboardInterrupt included: still report and clean up
        ctx.fail(e)
    finally:
        stop_progress.set()
        load.stop()
        api.close()
        if server is not None:
            server.stop()
    _fill(report, ctx, ledger, time.monotonic() - t0)
    if own_dir is not None and report.result == "PASS":
        shutil.rmtree(own_dir, ignore_errors=True)
        report.data_dir = report.server_log = None
    return report


def _fill(report: Report, ctx: SoakContext, ledger: Ledger, elapsed: float) -> None:
    report.elapsed_s = elapsed
    report.examples, report.steps = ctx.examples, ctx.steps
    report.faults = dict(ctx.faults)
    report.machine_jobs = ctx.machine_jobs
    report.server_starts = ctx.server.starts if ctx.server else 0
    report.load = {
        "pushed": ledger.pushed,
        "delivered": ledger.delivered,
        "acked": ledger.acked,
        "failed": ledger.failed,
        "queues_retired": ledger.retired,
    }
    report.allowed = {
        "lost_unpromised": ledger.lost_unpromised + ctx.allowed["lost_unpromised"],
        "acks_undone": ctx.allowed["acks_undone"],
        "redelivered": ledger.redelivered_allowed,
    }
    report.checks = ctx.tally.snapshot()
    if isinstance(ctx.server, SoakCluster):
        killed = " ".join(ctx.server.killed) or "none"
        report.cluster = (
            f"cluster of {len(ctx.server.brokers)} brokers (namespace {ctx.server.namespace}, "
            f"owners killed: {killed})"
        )
    report.peak_rss_mb = ctx.memory.peak_mb
    report.trail = list(ctx.trail)
    failure = ctx.failure
    if isinstance(failure, Violation):
        report.result = "FAIL"
        report.violation = {"invariant": failure.invariant, "message": failure.message}
    elif failure is not None:
        report.result = "ERROR"
        report.error = (
            "".join(traceback.format_exception_only(type(failure), failure)).strip()
            + "\n"
            + "".join(traceback.format_tb(failure.__traceback__)[-4:])
        )
