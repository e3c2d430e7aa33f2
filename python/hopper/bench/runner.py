"""Runs one scenario against one server and returns what was measured."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from hopper.bench.histograms import Recorder
from hopper.bench.http_driver import HttpTransport
from hopper.bench.progress import Progress
from hopper.bench.scenarios import RUNNERS, Plan, RunState
from hopper.bench.transport import RequestFailed, Transport
from hopper.bench.ws_driver import WsTransport

T = TypeVar("T")


@dataclass
class Options:
    transport: str  # "http" | "ws"
    connections: int  # HTTP connections, or WS sockets
    window: int  # WS commands in flight per socket
    token: str | None = None
    timeout_s: float = 10.0
    ws_path: str = "/ws"
    progress: bool = True
    progress_out: TextIO = field(default_factory=lambda: sys.stderr)


@dataclass
class RunResult:
    label: str
    url: str
    scenario: str
    transport: str
    plan: Plan
    options: Options
    recorders: list[Recorder]
    notes: list[str]
    started_at: float  # epoch seconds
    wall_s: float

    @property
    def open_loop(self) -> bool:
        return self.plan.rate is not None


def make_transport(url: str, opts: Options) -> Transport:
    if opts.transport == "ws":
        return WsTransport(url, opts.connections, opts.token, opts.timeout_s, opts.ws_path)
    return HttpTransport(url, opts.token, opts.timeout_s)


def lanes_per_side(opts: Options) -> int:
    """Concurrent operations per side: one per HTTP connection, `window` per WS socket."""
    if opts.transport == "ws":
        return max(1, opts.connections) * max(1, opts.window)
    return max(1, opts.connections)


async def run_async(label: str, url: str, plan: Plan, opts: Options) -> RunResult:
    t = make_transport(url, opts)
    st = RunState()
    started_at = time.time()
    t0 = time.perf_counter()
    await t.open(plan.total_lanes())
    progress = Progress(label, st, opts.progress_out) if opts.progress else None
    try:
        if progress is not None:
            progress.start()
        await RUNNERS[plan.scenario](t, plan, st)
    finally:
        if progress is not None:
            await progress.stop()
        if isinstance(t, WsTransport) and t.events():
            st.notes.append(f"ws: {t.events():,} broadcast events received and skipped")
        await t.close()
    return RunResult(
        label=label,
        url=url,
        scenario=plan.scenario,
        transport=opts.transport,
        plan=plan,
        options=opts,
        recorders=st.recorders,
        notes=st.notes,
        started_at=started_at,
        wall_s=time.perf_counter() - t0,
    )


# ----- the queues a run leaves behind ---------------------------------------------------
# Removed with the command table's `ListQueues` / `Obliterate` (force: a run can end with
# jobs still active) over one WebSocket: the same commands on hopper and the reference,
# whatever the management API's base path. `Obliterate` leaves a queue's schedulers, and a
# bench queue has none.


async def _commands(url: str, opts: Options, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    t = WsTransport(url, 1, opts.token, opts.timeout_s, "/ws")
    await t.open(1)
    try:
        return [await t.command(cmd) for cmd in cmds]
    finally:
        await t.close()


def list_queues(url: str, opts: Options) -> list[str]:
    """The server's queue names. RuntimeError or RequestFailed when it cannot tell."""
    (reply,) = run_loop(_commands(url, opts, [{"cmd": "ListQueues"}]))
    queues = reply.get("queues")
    if not isinstance(queues, list):
        data = reply.get("data")
        queues = data.get("queues") if isinstance(data, dict) else None
    if not isinstance(queues, list):
        raise RequestFailed(f"ListQueues: unexpected reply {reply!r}")
    return [str(q) for q in queues]


def obliterate(url: str, queues: list[str], opts: Options) -> None:
    """Removes `queues` and all their jobs from the server, active ones included."""
    cmds = [{"cmd": "Obliterate", "queue": q, "force": True} for q in queues]
    run_loop(_commands(url, opts, cmds))


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Runs on uvloop when it is installed (it is a hopper dependency), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


def run(label: str, url: str, plan: Plan, opts: Options) -> RunResult:
    return run_loop(run_async(label, url, plan, opts))
