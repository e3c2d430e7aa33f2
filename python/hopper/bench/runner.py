"""Runs one scenario against one server with the load generator and returns what was
measured.

The load itself comes from Rust (`hopper._engine.LoadGen`, the crate `rust/loadgen`):
connections spread over `threads` single-threaded event loops, requests prebuilt, replies
parsed in place, HDR histograms recorded there. This module turns the command line's
plan into its JSON configuration, shows its progress, and reads its report back.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from hopper._engine import InvalidInputError, LoadGen
from hopper.bench.histograms import Series
from hopper.bench.progress import Progress

POLL_MS = 1000  # long-poll wait of the e2e workers and mixed pulls


@dataclass
class Plan:
    scenario: str  # push | bulk | pullack | pullb | e2e | mixed
    queues: list[str]
    workers: int  # e2e worker connections
    warmup_s: float
    duration_s: float | None
    count: int | None
    rate: float | None
    timeout_s: float
    prefill: int | None  # pullack, pullb: jobs to pre-fill (None: enough for the run)
    payload_bytes: int = 0  # 0: the standard ~90-byte job payload
    batch: int = 100  # bulk, pullb: jobs per request
    mix: tuple[int, int] = (1, 1)  # mixed: pushes to pull+acks


@dataclass
class Options:
    transport: str  # "http" | "ws" | "tcp"
    connections: int  # per side: HTTP connections, WS sockets or TCP connections
    window: int  # requests in flight per WS socket or TCP connection
    threads: int = 1  # generator threads
    token: str | None = None
    timeout_s: float = 10.0
    ws_path: str = "/ws"
    tcp_port: int | None = None  # the bunqueue TCP port (transport "tcp")
    progress: bool = True
    progress_out: TextIO = field(default_factory=lambda: sys.stderr)

    def lanes(self) -> int:
        """Operations in flight per side: one per HTTP connection, `window` otherwise."""
        return self.connections * (1 if self.transport == "http" else self.window)


@dataclass
class Generator:
    """What the load generator itself used: its threads' CPU time over the run's wall time
    (so a reader can see it was not the limit)."""

    threads: int
    cpu_s: float | None
    wall_s: float

    @property
    def cpu_share(self) -> float | None:
        """CPU seconds per wall second (1.0 = one core busy)."""
        if self.cpu_s is None or self.wall_s <= 0:
            return None
        return self.cpu_s / self.wall_s


@dataclass
class RunResult:
    label: str
    url: str
    scenario: str
    transport: str
    plan: Plan
    options: Options
    series: list[Series]
    notes: list[str]
    started_at: float  # epoch seconds
    wall_s: float
    generator: Generator

    @property
    def open_loop(self) -> bool:
        return self.plan.rate is not None


def config(url: str, plan: Plan, opts: Options) -> dict[str, Any]:
    """The load generator's configuration (see rust/loadgen/src/config.rs)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise RuntimeError(f"not a server URL: {url}")
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    if parts.scheme in ("https", "wss"):
        raise RuntimeError("TLS is not supported by the load generator: use http://")
    if opts.transport == "tcp":
        if opts.tcp_port is None:
            raise RuntimeError("the tcp transport needs --tcp-port")
        port = opts.tcp_port
    return {
        "transport": opts.transport,
        "scenario": plan.scenario,
        "host": parts.hostname,
        "port": port,
        "ws_path": opts.ws_path,
        "token": opts.token,
        "connections": opts.connections,
        "window": opts.window,
        "threads": opts.threads,
        "workers": plan.workers,
        "queues": plan.queues,
        "payload_bytes": plan.payload_bytes,
        "batch": plan.batch,
        "mix": list(plan.mix),
        "rate": plan.rate,
        "count": plan.count,
        "duration_s": plan.duration_s,
        "warmup_s": plan.warmup_s,
        "timeout_s": plan.timeout_s,
        "poll_ms": POLL_MS,
        "prefill": plan.prefill,
    }


def run(label: str, url: str, plan: Plan, opts: Options) -> RunResult:
    """One run; RuntimeError when it cannot start (a server it cannot reach included)."""
    started_at = time.time()
    t0 = time.perf_counter()
    try:
        gen = LoadGen(json.dumps(config(url, plan, opts)))
    except (ValueError, InvalidInputError, ConnectionError) as e:  # a refused config too
        raise RuntimeError(str(e)) from e
    progress = Progress(label, gen, opts.progress_out) if opts.progress else None
    try:
        while not gen.finished():
            time.sleep(0.05)
            if progress is not None:
                progress.tick()
    except KeyboardInterrupt:
        gen.stop()
    try:
        report = json.loads(gen.join())
    except ConnectionError as e:
        raise RuntimeError(str(e)) from e
    if progress is not None:
        progress.stop(report)
    return RunResult(
        label=label,
        url=url,
        scenario=plan.scenario,
        transport=opts.transport,
        plan=plan,
        options=opts,
        series=[Series.from_report(s) for s in report["series"]],
        notes=[str(n) for n in report["notes"]],
        started_at=started_at,
        wall_s=time.perf_counter() - t0,
        generator=Generator(
            threads=int(report["threads"]),
            cpu_s=report["cpu_s"],
            wall_s=float(report["wall_s"]),
        ),
    )


def merge(runs: list[RunResult]) -> RunResult:
    """The runs of one server over several --rounds as one result: histograms and counts
    added, measured times and the generator's CPU and wall time summed."""
    first = runs[0]
    if len(runs) == 1:
        return first
    series = []
    for i, s in enumerate(first.series):
        hist, raw = s.hist, s.raw
        for other in runs[1:]:
            o = other.series[i]
            hist.add(o.hist)
            if raw is not None and o.raw is not None:
                raw.add(o.raw)
        series.append(
            Series(
                name=s.name,
                hist=hist,
                raw=raw,
                jobs=sum(r.series[i].jobs for r in runs),
                errors=sum(r.series[i].errors for r in runs),
                error_sample=next(
                    (r.series[i].error_sample for r in runs if r.series[i].error_sample), ""
                ),
                unmeasured=sum(r.series[i].unmeasured for r in runs),
                empty=sum(r.series[i].empty for r in runs),
                elapsed_s=sum(r.series[i].elapsed_s for r in runs),
            )
        )
    notes = [f"{len(runs)} rounds, alternating with the other server; their sums"]
    for r in runs:
        notes += [n for n in r.notes if n not in notes]
    cpu = [r.generator.cpu_s for r in runs]
    return RunResult(
        label=first.label,
        url=first.url,
        scenario=first.scenario,
        transport=first.transport,
        plan=first.plan,
        options=first.options,
        series=series,
        notes=notes,
        started_at=first.started_at,
        wall_s=sum(r.wall_s for r in runs),
        generator=Generator(
            threads=first.generator.threads,
            cpu_s=None if None in cpu else sum(c for c in cpu if c is not None),
            wall_s=sum(r.generator.wall_s for r in runs),
        ),
    )


# ----- the queues a run leaves behind ---------------------------------------------------
# Removed with the command table's `ListQueues` / `Obliterate` (force: a run can end with
# jobs still active) over one WebSocket: the same commands on hopper and the reference,
# whatever the management API's base path. `Obliterate` leaves a queue's schedulers, and a
# bench queue has none.


class CommandFailed(Exception):
    """A command was refused (`ok: false`) or its socket failed."""


def _commands(url: str, opts: Options, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    base = url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[4:]
    headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else None
    replies = []
    try:
        with connect(
            base + "/ws",
            additional_headers=headers,
            open_timeout=opts.timeout_s,
            max_size=None,
            compression=None,
        ) as ws:
            for i, cmd in enumerate(cmds, 1):
                ws.send(json.dumps({**cmd, "reqId": i}))
                while True:  # skip broadcast events (no reqId)
                    msg = json.loads(ws.recv(timeout=opts.timeout_s))
                    if isinstance(msg, dict) and msg.get("reqId") == i:
                        break
                if msg.get("ok") is not True:
                    raise CommandFailed(str(msg.get("error") or msg)[:300])
                replies.append(msg)
    except (WebSocketException, TimeoutError) as e:
        raise CommandFailed(f"{type(e).__name__}: {e}") from e
    return replies


def list_queues(url: str, opts: Options) -> list[str]:
    """The server's queue names. CommandFailed or OSError when it cannot tell."""
    (reply,) = _commands(url, opts, [{"cmd": "ListQueues"}])
    queues = reply.get("queues")
    if not isinstance(queues, list):
        data = reply.get("data")
        queues = data.get("queues") if isinstance(data, dict) else None
    if not isinstance(queues, list):
        raise CommandFailed(f"ListQueues: unexpected reply {reply!r}")
    return [str(q) for q in queues]


def obliterate(url: str, queues: list[str], opts: Options) -> None:
    """Removes `queues` and all their jobs from the server, active ones included."""
    _commands(url, opts, [{"cmd": "Obliterate", "queue": q, "force": True} for q in queues])
