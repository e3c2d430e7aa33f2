"""HTTP / WebSocket server benchmark: `hopper serve` side by side with the bunqueue server.

Starts both servers itself on free 127.0.0.1 ports (hopper via `.venv/bin/hopper serve`,
the reference via Bun + bunqueue pinned in bench/peers, in-memory), then for each of
--runs runs and each scenario measures both servers one after the other, for --duration
seconds each after a --warmup, and reports the median over runs:

  push c1/c16/c64  wrk, POST /queues/<q>/jobs with a ~90-byte job payload (bench/wrk/push.lua)
  pull+ack c16     wrk, GET /queues/<q>/jobs then POST /jobs/<id>/ack, one connection per
                   wrk thread so the chain and the pair latency are exact (bench/wrk/pullack.lua)
  bulk push c16    wrk, POST /queues/<q>/jobs/bulk with {"jobs":[100 push bodies]} -> jobs/s
  ws push          one WebSocket to /ws, PUSH commands with a window of --ws-window in
                   flight, counting replies (the broadcast events are received and skipped);
                   client: bench/ws_push_client.ts on Bun (--ws-impl python for the asyncio one)
  ws push filtered the same on /ws/queues/<another queue> (filtered: no job events)
  ws push events   --ws-events-conns sockets x --ws-events-window in flight on /ws for
                   --ws-events-duration s: every socket receives every push's event; sockets
                   the server closes (code, reason) are counted and reported
  ws pushb         PUSHB of --ws-pushb-size jobs per message, --ws-pushb-window in flight -> jobs/s
  bare c64         ceiling: a bare Granian ASGI app (bench/bare_app.py, same Granian settings
                   as hopper) in the hopper column and a bare Bun.serve (bench/bare_bun.ts)
                   in the reference column, both reading and parsing the body (--no-bare-parse:
                   answering without reading it), then answering a fixed JSON
  bare rsgi c64    the same with the bare Granian app on RSGI instead of ASGI
  bare ws          the same two bare servers echoing a fixed reply per WS message (WS ceiling)
  bare rsgi ws     the same with the bare Granian app on RSGI
  engine c64       the floor of any job server on Granian: the bare ASGI app pushing each
                   body into a hopper engine and answering after its log write (bare_app.py
                   --engine log), against the bunqueue server
  engine rsgi c64  the same on RSGI

Every load generator run is bounded in time (-d / deadline) and count; all traffic goes to
127.0.0.1. Generator and server CPU (cores = CPU seconds / wall seconds) are recorded for
every sample. Servers are restarted for each run and always killed at the end.

    .venv/bin/python bench/server.py [--runs 3] [--duration 10] [--warmup 2]
    .venv/bin/python bench/server.py --runs 1 --duration 2 --warmup 0.5     # smoke run
    .venv/bin/python bench/server.py --only ws_push_events --hopper-arg=--interface=rsgi
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import dataclasses
import http.client
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hopper.server_process import ServerProcess, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
WRK_DIR = HERE / "wrk"
BUN = PEERS / "node_modules" / ".bin" / "bun"
BUNQUEUE_MAIN = PEERS / "node_modules" / "bunqueue" / "dist" / "main.js"
PAYLOAD = {
    "to": "user@example.com",
    "subject": "Welcome aboard!!!",
    "template": "welcome-v2-2026",
    "n": 1,
}
PUSH_BODY = json.dumps({"data": PAYLOAD}, separators=(",", ":"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_REQ_PER_THREAD = 50_000_000  # count bound on top of wrk's -d time bound
SERVERS = ("hopper", "reference")

_children: list[ServerProcess] = []  # servers running now
_generator: list[subprocess.Popen] = []  # the load generator running now, if any


# --------------------------------------------------------------------------- processes


def spawn(
    cmd: list[str],
    *,
    port: int,
    cwd: Path,
    log: Path,
    env: dict[str, str] | None = None,
    health_path: str = "/health",
) -> ServerProcess:
    """Launches a server (not waiting for it), tracked so that stop_all() ends it."""
    server = ServerProcess(
        cmd,
        port=port,
        log=log,
        env=os.environ if env is None else env,
        cwd=cwd,
        label=log.stem,
        health_path=health_path,
    )
    server.launch()
    _children.append(server)
    return server


def stop(server: ServerProcess, grace: float = 3.0) -> None:
    server.stop(grace)
    if server in _children:
        _children.remove(server)


def stop_all() -> None:
    for g in list(_generator):
        if g.poll() is None:
            g.kill()
    for server in list(_children):
        stop(server)


def proc_tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_cpu_s(pid: int) -> float:
    """utime+stime of a process and its live descendants (all threads), in seconds."""
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all cores from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return total - idle, total


def run_measured(cmd: list[str], env: dict[str, str], server_pid: int, timeout: float):
    """Runs a load generator to completion; returns (stdout, server cores, machine busy
    cores, wall seconds). The generator's CPU is taken by the caller (ChildCPU)."""
    busy0, tot0 = machine_busy()
    srv0 = tree_cpu_s(server_pid)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _generator.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RuntimeError(f"load generator timed out: {shlex.join(cmd)}") from None
    finally:
        _generator.remove(p)
    wall = time.monotonic() - t0
    srv1 = tree_cpu_s(server_pid)
    busy1, tot1 = machine_busy()
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {p.returncode}: {err.decode()[-2000:]}")
    ncpu = os.cpu_count() or 1
    machine = (busy1 - busy0) / max(1, tot1 - tot0) * ncpu
    return out.decode(), (srv1 - srv0) / wall, machine, wall


class ChildCPU:
    """CPU seconds used by children reaped inside the `with` block (the load generator)."""

    def __enter__(self):
        import resource

        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.t0 = r.ru_utime + r.ru_stime
        return self

    def __exit__(self, *exc):
        import resource

        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.seconds = r.ru_utime + r.ru_stime - self.t0
        return False


# --------------------------------------------------------------------------- servers


class Servers:
    """The two servers under test, fresh for one run."""

    def __init__(
        self, logdir: Path, tag: str, hopper_args: list[str], bare_parse: bool = True
    ) -> None:
        self.logdir = logdir
        self.tag = tag  # log file suffix
        self.hopper_args = hopper_args  # appended to `hopper serve ...`
        self.bare_parse = bare_parse
        self.port: dict[str, int] = {}
        self.proc: dict[str, ServerProcess] = {}

    def start(self, bare: str | None = None) -> None:
        """`bare`: None for hopper and bunqueue, "asgi" / "rsgi" for the bare pair,
        "engine-asgi" / "engine-rsgi" for the engine-backed bare app (with its log) and
        bunqueue."""
        hp, rp, rtcp = free_port(), free_port(), free_port()
        if bare and not bare.startswith("engine"):
            h = spawn(
                bare_app_cmd(hp, bare, self.bare_parse),
                port=hp,
                cwd=HERE,
                log=self.logdir / f"bare_granian_{bare}-{self.tag}.log",
                health_path="/",
            )
            r = spawn(
                [str(BUN), "bare_bun.ts", str(rp), *(["parse"] if self.bare_parse else [])],
                port=rp,
                cwd=HERE,
                log=self.logdir / f"bare_bun-{self.tag}.log",
                health_path="/",
            )
        else:
            if bare:
                h = spawn(
                    [*bare_app_cmd(hp, bare.split("-")[1], False), "--engine", "log"],
                    port=hp,
                    cwd=HERE,
                    log=self.logdir / f"bare_{bare}-{self.tag}.log",
                    health_path="/",
                )
            else:
                h = spawn(
                    hopper_serve_cmd(hp, self.hopper_args),
                    port=hp,
                    cwd=self.logdir,  # its ./data default dir lands in the scratch dir
                    log=self.logdir / f"hopper-{self.tag}.log",
                )
            env = dict(
                os.environ,
                HOST="127.0.0.1",
                HTTP_PORT=str(rp),
                TCP_PORT=str(rtcp),
                RATE_LIMIT_MAX_REQUESTS="1000000000",
            )
            env.pop("DATA_PATH", None)  # in-memory
            r = spawn(
                [str(BUN), str(BUNQUEUE_MAIN)],
                port=rp,
                cwd=PEERS,
                env=env,
                log=self.logdir / f"bunqueue-{self.tag}.log",
            )
        self.proc = {"hopper": h, "reference": r}
        self.port = {"hopper": hp, "reference": rp}
        deadline = time.monotonic() + 30
        for name in SERVERS:
            if not self.proc[name].wait_healthy(deadline):
                raise RuntimeError(f"{name} server did not answer within 30 s")

    def alive(self, name: str) -> bool:
        return self.proc[name].running

    def stop(self) -> None:
        for server in self.proc.values():
            stop(server)


def hopper_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "hopper"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hopper"]


def hopper_serve_cmd(port: int | str, extra: list[str]) -> list[str]:
    return [*hopper_cmd(), "serve", "--host", "127.0.0.1", "--port", str(port), *extra]


def bare_app_cmd(port: int | str, interface: str, parse: bool) -> list[str]:
    cmd = [sys.executable, "bare_app.py", "--host", "127.0.0.1", "--port", str(port)]
    return [*cmd, "--interface", interface, *(["--parse"] if parse else [])]


def bulk_push(port: int, queue: str, n: int, per_request: int = 5000) -> None:
    """Pre-fills a queue through the bulk endpoint (bounded: ceil(n / per_request) calls)."""
    body_one = {"data": PAYLOAD}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    left = n
    while left > 0:
        k = min(per_request, left)
        body = json.dumps({"jobs": [body_one] * k}).encode()
        c.request("POST", f"/queues/{queue}/jobs/bulk", body, {"Content-Type": "application/json"})
        resp = c.getresponse()
        data = resp.read()
        if resp.status != 200 or b'"ok":true' not in data:
            raise RuntimeError(f"prefill failed: {resp.status} {data[:200]!r}")
        left -= k
    c.close()


# --------------------------------------------------------------------------- scenarios


def wrk_cmd(script: str, port: int, threads: int, conns: int, seconds: float) -> list[str]:
    return [
        "wrk",
        f"-t{threads}",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_DIR / script),
        f"http://127.0.0.1:{port}",
    ]


def parse_wrk(out: str) -> dict:
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON ") :])
    raise RuntimeError(f"no WRKJSON line in wrk output:\n{out[-2000:]}")


def measure(cmd: list[str], env: dict[str, str], server_pid: int, seconds: float) -> dict:
    with ChildCPU() as cpu:
        out, srv_cores, machine_cores, wall = run_measured(cmd, env, server_pid, seconds + 60)
    res = parse_wrk(out) if cmd[0] == "wrk" else json.loads(out.strip().splitlines()[-1])
    res["generator_cores"] = cpu.seconds / wall
    res["server_cores"] = srv_cores
    res["machine_busy_cores"] = machine_cores
    # kernel softirq for loopback traffic + anything else on the machine
    res["other_cores"] = machine_cores - res["generator_cores"] - srv_cores
    res["wall_s"] = wall
    return res


def scenario_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("BENCH_"):
            del env[k]
    env.update(extra)
    return env


@dataclasses.dataclass
class WsLoad:
    """A WebSocket load: `conns` sockets on `path` ({q} = the queue), `window` commands in
    flight on each, PUSH or PUSHB of `batch` jobs."""

    path: str
    conns: int
    window: int
    mode: str = "push"
    batch: int = 1


class Scenario:
    def __init__(
        self,
        key: str,
        label: str,
        unit: str,
        kind: str,
        *,
        bare: str | None = None,
        conns: int = 0,
        ws: WsLoad | None = None,
        duration: float | None = None,
    ) -> None:
        self.key, self.label, self.unit, self.kind = key, label, unit, kind
        self.bare = bare  # None (hopper vs bunqueue), or the bare Granian app's interface
        self.conns = conns  # wrk connections (push, bare HTTP)
        self.ws = ws
        self.duration = duration  # overrides --duration


def build_scenarios(args: argparse.Namespace) -> list[Scenario]:
    out = [
        Scenario(f"push_c{c}", f"HTTP push, {c} conn", "pushes/s", "push", conns=c)
        for c in args.conns
    ]
    out.append(
        Scenario(
            f"pullack_c{args.pull_conns}",
            f"HTTP pull+ack, {args.pull_conns} conn",
            "pairs/s",
            "pullack",
        )
    )
    out.append(
        Scenario(
            f"bulk_c{args.bulk_conns}",
            f"HTTP bulk push ({args.bulk_size}/req), {args.bulk_conns} conn",
            "jobs/s",
            "bulk",
        )
    )
    ws = WsLoad("/ws", args.ws_conns, args.ws_window)
    out.append(
        Scenario(
            "ws_push",
            f"WS push, {args.ws_conns} conn, window {args.ws_window}",
            "pushes/s",
            "ws",
            ws=ws,
        )
    )
    out.append(
        Scenario(
            "ws_push_filtered",
            f"WS push on /ws/queues/<another q> (no events), {args.ws_conns} conn, "
            f"window {args.ws_window}",
            "pushes/s",
            "ws",
            # Filtered on a queue nobody pushes to: replies only, no job events.
            ws=dataclasses.replace(ws, path="/ws/queues/{q}-quiet"),
        )
    )
    out.append(
        Scenario(
            "ws_push_events",
            f"WS push, events on (/ws), {args.ws_events_conns} conn x window "
            f"{args.ws_events_window}, {args.ws_events_duration:g} s",
            "pushes/s",
            "ws",
            ws=WsLoad("/ws", args.ws_events_conns, args.ws_events_window),
            duration=args.ws_events_duration,
        )
    )
    out.append(
        Scenario(
            "ws_pushb",
            f"WS PUSHB ({args.ws_pushb_size}/msg), {args.ws_conns} conn, "
            f"window {args.ws_pushb_window}",
            "jobs/s",
            "ws",
            ws=WsLoad("/ws", args.ws_conns, args.ws_pushb_window, "pushb", args.ws_pushb_size),
        )
    )
    body = "parse body" if args.bare_parse else "body unread"
    for iface in ("asgi", "rsgi"):
        infix = "" if iface == "asgi" else "rsgi_"
        out.append(
            Scenario(
                f"bare_{infix}c{args.bare_conns}",
                f"ceiling: bare Granian {iface.upper()} vs bare Bun.serve, {body}, "
                f"{args.bare_conns} conn",
                "req/s",
                "push",
                bare=iface,
                conns=args.bare_conns,
            )
        )
        out.append(
            Scenario(
                f"bare_{infix}ws",
                f"ceiling: bare Granian {iface.upper()} vs bare Bun.serve, WS echo, "
                f"{'parse msg' if args.bare_parse else 'msg unparsed'}, {args.ws_conns} conn, "
                f"window {args.ws_window}",
                "msgs/s",
                "ws",
                bare=iface,
                ws=ws,
            )
        )
    for iface in ("asgi", "rsgi"):
        out.append(
            Scenario(
                f"engine_{'' if iface == 'asgi' else 'rsgi_'}c{args.bare_conns}",
                f"floor: bare Granian {iface.upper()} pushing into the engine with its log "
                f"vs bunqueue, {args.bare_conns} conn",
                "pushes/s",
                "push",
                bare=f"engine-{iface}",
                conns=args.bare_conns,
            )
        )
    if args.only:
        keep = set(args.only.split(","))
        out = [s for s in out if s.key in keep or s.key.split("_")[0] in keep]
    return out


def run_scenario(
    sc: Scenario, name: str, port: int, pid: int, args, scratch: Path, run: int
) -> dict:
    d = sc.duration or args.duration
    q = f"{sc.key.replace('_', '')}r{run + 1}"  # fresh queue per scenario and run
    if sc.kind == "push":
        conns = sc.conns
        threads = min(conns, args.wrk_threads)
        env = scenario_env(
            {"BENCH_PATH": f"/queues/{q}/jobs", "BENCH_MAX_REQ": str(MAX_REQ_PER_THREAD)}
        )
        cmd = lambda s: wrk_cmd("push.lua", port, threads, conns, s)  # noqa: E731
    elif sc.kind == "bulk":
        conns = args.bulk_conns
        body = scratch / "bulk_body.json"
        body.write_text(
            json.dumps({"jobs": [{"data": PAYLOAD}] * args.bulk_size}, separators=(",", ":"))
        )
        env = scenario_env(
            {
                "BENCH_PATH": f"/queues/{q}/jobs/bulk",
                "BENCH_BODY_FILE": str(body),
                "BENCH_PER_REQ": str(args.bulk_size),
                "BENCH_MAX_REQ": str(MAX_REQ_PER_THREAD),
            }
        )
        cmd = lambda s: wrk_cmd("push.lua", port, min(conns, args.wrk_threads), conns, s)  # noqa: E731
    elif sc.kind == "pullack":
        conns = args.pull_conns
        n = int(args.prefill_rate * (d + args.warmup))
        t0 = time.monotonic()
        bulk_push(port, q, n)
        prefill_s = time.monotonic() - t0
        env = scenario_env({"BENCH_QUEUE": q, "BENCH_MAX_PAIRS": str(n)})
        cmd = lambda s: wrk_cmd("pullack.lua", port, conns, conns, s)  # noqa: E731
    elif sc.kind == "ws":
        env = scenario_env({})
        ws = sc.ws
        assert ws is not None
        url = f"ws://127.0.0.1:{port}" + ws.path.format(q=q)

        def cmd(s: float) -> list[str]:
            if args.ws_impl == "bun":
                return [
                    str(BUN),
                    str(HERE / "ws_push_client.ts"),
                    url,
                    f"{s:g}",
                    str(ws.window),
                    str(ws.conns),
                    q,
                    ws.mode,
                    str(ws.batch),
                ]
            return [
                sys.executable,
                str(Path(__file__).resolve()),
                "--ws-client",
                url,
                "--duration",
                f"{s:g}",
                "--ws-window",
                str(ws.window),
                "--ws-conns",
                str(ws.conns),
                "--ws-queue",
                q,
                "--ws-mode",
                ws.mode,
                "--ws-batch",
                str(ws.batch),
            ]
    else:
        raise ValueError(sc.key)
    if args.warmup > 0:
        # wrk's -d has 1 s granularity; the WS client takes fractions
        measure(cmd(args.warmup), env, pid, args.warmup)
    res = measure(cmd(d), env, pid, d)
    res["command"] = shlex.join(cmd(d))
    if sc.kind == "pullack":
        res["prefill_jobs"] = n
        res["prefill_s"] = prefill_s
        res["ran_dry"] = res.get("empty", 0) > 0
    return res


# --------------------------------------------------------------------------- WS client


def ws_prefix(queue: str, mode: str, batch: int) -> str:
    """A PUSH / PUSHB command up to its reqId value (the client appends `<n>}`)."""
    data = json.dumps(PAYLOAD, separators=(",", ":"))
    q = json.dumps(queue)
    if mode == "push":
        return f'{{"cmd":"PUSH","queue":{q},"data":{data},"reqId":'
    jobs = ",".join([f'{{"data":{data}}}'] * batch)
    return f'{{"cmd":"PUSHB","queue":{q},"jobs":[{jobs}],"reqId":'


async def _ws_conn(
    url: str,
    prefix: str,
    deadline: float,
    window: int,
    limit: int,
    stats: dict,
    socket: int,
    t0: float,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    sent_at: dict[int, float] = {}
    lat: list[float] = stats["lat"]
    now = time.perf_counter
    seq = 0
    opened = False
    try:
        async with connect(
            url, compression=None, max_size=None, ping_interval=None, max_queue=None
        ) as ws:
            opened = True
            while seq < window and seq < limit:
                sent_at[seq] = now()
                await ws.send(prefix + str(seq) + "}")
                seq += 1
            stopping = False
            while sent_at:
                remaining = (deadline + 5 if stopping else deadline) - time.monotonic()
                if remaining <= 0:
                    if stopping:
                        break
                    stopping = True
                    continue
                try:
                    msg = await asyncio.wait_for(ws.recv(), remaining)
                except TimeoutError:
                    continue
                i = msg.rfind('"reqId":')
                if i < 0:
                    stats["events"] += 1
                    if time.monotonic() <= deadline:
                        stats["events_in_window"] += 1
                    continue
                rid = int(msg[i + 8 : msg.index("}", i)].strip('"'))
                t = sent_at.pop(rid, None)
                if t is None:
                    stats["bad"] += 1
                    continue
                t1 = now()
                if time.monotonic() <= deadline:
                    if '"ok":true' in msg:
                        stats["ok"] += 1
                        lat.append(t1 - t)
                    else:
                        stats["bad"] += 1
                        stats["sample_bad"] = stats["sample_bad"] or msg[:200]
                else:
                    stopping = True
                if not stopping and seq < limit:
                    sent_at[seq] = now()
                    await ws.send(prefix + str(seq) + "}")
                    seq += 1
    except (ConnectionClosed, OSError) as e:
        # closed by the server (or refused) before this client was done with it
        rcvd = getattr(e, "rcvd", None)
        stats["closed_sockets"] += 1
        stats["close_reasons"].append(
            {
                "socket": socket,
                "code": rcvd.code if rcvd is not None else 1006,
                "reason": rcvd.reason if rcvd is not None else str(e)[:200],
                "at_s": time.monotonic() - t0,
                "opened": opened,
            }
        )
    finally:
        stats["sent"] += seq
        stats["last_active"] = max(stats["last_active"], min(time.monotonic(), deadline))


def ws_client(args: argparse.Namespace) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    stats = {
        "ok": 0,
        "bad": 0,
        "events": 0,
        "events_in_window": 0,
        "sent": 0,
        "lat": [],
        "sample_bad": "",
        "closed_sockets": 0,
        "close_reasons": [],
        "ws_errors": 0,
        "last_active": 0.0,
    }
    limit = 20_000_000
    batch = args.ws_batch if args.ws_mode == "pushb" else 1
    prefix = ws_prefix(args.ws_queue, args.ws_mode, batch)

    async def main() -> float:
        t0 = time.monotonic()
        stats["last_active"] = t0
        deadline = t0 + args.duration
        await asyncio.gather(
            *(
                _ws_conn(args.ws_client, prefix, deadline, args.ws_window, limit, stats, i, t0)
                for i in range(args.ws_conns)
            )
        )
        return stats.pop("last_active") - t0

    active = asyncio.run(main())
    secs = args.duration  # the whole window, even if every socket was closed early
    lat = sorted(stats.pop("lat"))

    def pct(p: float) -> float | None:
        if not lat:
            return None
        return lat[min(len(lat) - 1, max(0, int(len(lat) * p / 100 + 0.5) - 1))] * 1e6

    print(
        json.dumps(
            {
                **stats,
                "mode": args.ws_mode,
                "batch": batch,
                "conns": args.ws_conns,
                "window": args.ws_window,
                "url": args.ws_client,
                "duration_s": secs,
                "active_s": active,
                "rate": stats["ok"] * batch / secs,
                "reply_rate": stats["ok"] / secs,
                "event_rate": stats["events_in_window"] / secs,
                "p50_us": pct(50),
                "p99_us": pct(99),
                "events_per_reply": stats["events"] / max(1, stats["ok"]),
            }
        )
    )
    return 0


# --------------------------------------------------------------------------- report


def write_results(out: Path, started: float, info: dict, body: dict) -> None:
    """Writes a benchmark's JSON: the command that ran, when and for how long, on which
    machine, then `body` (method, samples, medians, ...)."""
    doc = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": time.time() - started,
        "machine": info,
        **body,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {out}", file=sys.stderr)


def machine_info() -> dict:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def ver(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    bq = "?"
    with contextlib.suppress(OSError):
        bq = json.loads((PEERS / "node_modules" / "bunqueue" / "package.json").read_text())
        bq = bq["version"]
    hopper_version = ver([sys.executable, "-c", "import hopper; print(hopper.__version__)"])
    hopper_path = ver([sys.executable, "-c", "import hopper; print(hopper.__file__)"])
    granian_version = ver([sys.executable, "-c", "import granian; print(granian.__version__)"])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "bun": ver([str(BUN), "--version"]),
        "bunqueue": bq,
        "hopper": hopper_version,
        "hopper_path": hopper_path,  # which checkout the interpreter (and hopper serve) import
        "granian": granian_version,
        "wrk": ver(["sh", "-c", "wrk --version 2>&1 | head -1"]),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_lat(p50: float | None, p99: float | None) -> str:
    if p50 is None:
        return "n/a"
    f = lambda us: f"{us / 1000:.2f}"  # noqa: E731
    return f"{f(p50)} / {f(p99)} ms"


def med(samples: list[dict], field: str) -> float | None:
    vals = [s[field] for s in samples if s.get(field) is not None]
    return statistics.median(vals) if vals else None


def report(scenarios: list[Scenario], samples: dict, args, info: dict) -> dict:
    labels = {"hopper": "hopper", "reference": f"bunqueue {info['bunqueue']}"}
    print(
        f"\nmedian of {args.runs} runs x {args.duration:g} s (unless the scenario says "
        f"otherwise); {info['cpu_model']}, "
        f"{info['nproc']} cores "
        f"(shared by generator and server), Python {info['python']}, Bun {info['bun']}, "
        f"hopper {info['hopper']}, bunqueue {info['bunqueue']}\n"
    )
    print(
        f"| scenario | hopper | {labels['reference']} | hopper / ref "
        "| hopper p50 / p99 | ref p50 / p99 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    medians: dict = {}
    for sc in scenarios:
        row = {}
        for name in SERVERS:
            s = samples[sc.key][name]
            row[name] = {
                f: med(s, f)
                for f in (
                    "rate",
                    "p50_us",
                    "p99_us",
                    "generator_cores",
                    "server_cores",
                    "machine_busy_cores",
                    "other_cores",
                    "reply_rate",
                    "event_rate",
                    "events_per_reply",
                    "closed_sockets",
                )
            }
        medians[sc.key] = row
        h, r = row["hopper"]["rate"], row["reference"]["rate"]
        ratio = f"{h / r:.2f}x" if h and r else "n/a"
        print(
            f"| {sc.label} ({sc.unit}) | {fmt_rate(h)} | {fmt_rate(r)} | {ratio} | "
            f"{fmt_lat(row['hopper']['p50_us'], row['hopper']['p99_us'])} | "
            f"{fmt_lat(row['reference']['p50_us'], row['reference']['p99_us'])} |"
        )
    print(
        "\nCPU during the measured window (median, in cores of the "
        f"{info['nproc']} available; generator = wrk or the WS client, from its rusage; rest of "
        "machine = /proc/stat busy minus both, i.e. loopback softirq and anything else running):\n"
    )
    print(
        "| scenario | generator (vs hopper) | hopper server | generator (vs ref) | ref server "
        "| rest of machine h / r |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for sc in scenarios:
        row = medians[sc.key]

        def c(n: str, f: str, row: dict = row) -> str:
            return "n/a" if row[n][f] is None else f"{row[n][f]:.2f}"

        print(
            f"| {sc.key} | {c('hopper', 'generator_cores')} | {c('hopper', 'server_cores')} | "
            f"{c('reference', 'generator_cores')} | {c('reference', 'server_cores')} | "
            f"{c('hopper', 'other_cores')} / {c('reference', 'other_cores')} |"
        )
    ws_rows = [sc for sc in scenarios if sc.kind == "ws" and not sc.bare]
    if ws_rows:
        print(
            "\nWebSocket details (median; closed = sockets the server closed before the "
            "client was done, summed over runs, with code and reason):\n"
        )
        print(
            "| scenario | replies/s h / r | events/s h / r | events per reply h / r "
            "| closed h / r | close reasons |"
        )
        print("|---|---:|---:|---:|---:|---|")
        for sc in ws_rows:
            row = medians[sc.key]

            def v(f: str, row: dict = row, fmt: str = ",.0f") -> str:
                return " / ".join(
                    "n/a" if row[n][f] is None else format(row[n][f], fmt) for n in SERVERS
                )

            closed = " / ".join(
                str(sum(x.get("closed_sockets", 0) for x in samples[sc.key][n])) for n in SERVERS
            )
            reasons = sorted(
                {
                    f"{n}: {c.get('code')} {c.get('reason', '')!r}"
                    for n in SERVERS
                    for x in samples[sc.key][n]
                    for c in x.get("close_reasons", [])
                }
            )
            print(
                f"| {sc.key} | {v('reply_rate')} | {v('event_rate')} | "
                f"{v('events_per_reply', fmt='.2f')} | {closed} | "
                f"{'; '.join(reasons) or '-'} |"
            )
    problems = []
    for sc in scenarios:
        for name in SERVERS:
            for i, s in enumerate(samples[sc.key][name]):
                bad = s.get("bad", 0)
                errs = s.get("errors") or {}
                nerr = sum(errs.values()) if isinstance(errs, dict) else 0
                closed = s.get("closed_sockets", 0)
                if bad or nerr or s.get("ran_dry") or s.get("error") or closed:
                    problems.append(
                        f"{sc.key} {name} run {i + 1}: bad={bad} wrk_errors={errs} "
                        f"empty_pulls={s.get('empty', 0)} {s.get('sample_bad', '')!r} "
                        f"{s.get('error', '')}"
                        + (
                            f" closed_sockets={closed} "
                            + "; ".join(
                                f"socket {c.get('socket')} code {c.get('code')} "
                                f"{c.get('reason', '')!r} at {c.get('at_s', 0):.2f} s"
                                for c in s.get("close_reasons", [])
                            )
                            if closed
                            else ""
                        )
                    )
    if problems:
        print("\nproblems seen:")
        for p in problems:
            print("  " + p)
    return medians


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    p.add_argument("--conns", default="1,16,64", help="push connection counts")
    p.add_argument("--pull-conns", type=int, default=16)
    p.add_argument("--bulk-conns", type=int, default=16)
    p.add_argument("--bulk-size", type=int, default=100)
    p.add_argument("--bare-conns", type=int, default=64)
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads for push/bulk/bare")
    p.add_argument("--ws-conns", type=int, default=1, help="ws_push, ws_push_filtered, ws_pushb")
    p.add_argument("--ws-window", type=int, default=256, help="ws_push, ws_push_filtered")
    p.add_argument("--ws-events-conns", type=int, default=4, help="ws_push_events sockets")
    p.add_argument("--ws-events-window", type=int, default=64, help="ws_push_events window")
    p.add_argument(
        "--ws-events-duration",
        type=float,
        default=30.0,
        help="seconds measured for ws_push_events (instead of --duration)",
    )
    p.add_argument("--ws-pushb-window", type=int, default=16, help="ws_pushb window")
    p.add_argument("--ws-pushb-size", type=int, default=100, help="jobs per PUSHB message")
    p.add_argument(
        "--bare-parse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bare apps read and parse the body / WS message (--no-bare-parse: they answer "
        "without reading the body and find the WS reqId by string search)",
    )
    p.add_argument(
        "--hopper-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="appended to the `hopper serve` command line (repeatable), e.g. "
        "--hopper-arg=--interface=rsgi",
    )
    p.add_argument(
        "--ws-impl",
        choices=("bun", "python"),
        default="bun",
        help="WS load generator: bench/ws_push_client.ts on Bun (default) or the asyncio "
        "websockets client in this file (about 4x slower: it caps bunqueue)",
    )
    p.add_argument(
        "--prefill-rate",
        type=float,
        default=40_000,
        help="pull+ack pre-fill: jobs per second of (warmup + duration)",
    )
    p.add_argument(
        "--only",
        help="comma list of scenario keys or first words (push,pullack,bulk,ws,bare)",
    )
    p.add_argument("--out", type=Path, default=HERE / "results" / "server.json")
    p.add_argument("--ws-client", help=argparse.SUPPRESS)
    p.add_argument("--ws-queue", default="qws", help=argparse.SUPPRESS)
    p.add_argument("--ws-mode", choices=("push", "pushb"), default="push", help=argparse.SUPPRESS)
    p.add_argument("--ws-batch", type=int, default=100, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ws_client:
        return ws_client(args)
    args.conns = [int(c) for c in str(args.conns).split(",") if c]

    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    if not BUN.exists():
        subprocess.run(["npm", "ci", "--silent"], cwd=PEERS, check=True)

    def on_signal(signum, _frame):
        # clean up here and leave at once: a raised SystemExit can land inside cleanup code
        stop_all()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(stop_all)

    info = machine_info()
    scenarios = build_scenarios(args)
    samples: dict = {sc.key: {n: [] for n in SERVERS} for sc in scenarios}
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hopper-bench-server-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        for run in range(args.runs):
            # alternate who goes first so warm caches / thermal drift do not favour one side
            order = SERVERS if run % 2 == 0 else SERVERS[::-1]
            for sc in scenarios:
                # fresh servers per scenario: no heap / backlog carried over between scenarios
                srv = Servers(scratch, f"run{run + 1}-{sc.key}", args.hopper_arg, args.bare_parse)
                srv.start(bare=sc.bare)
                try:
                    for name in order:
                        if not srv.alive(name):
                            raise RuntimeError(f"{name} server died; see {scratch}")
                        try:
                            res = run_scenario(
                                sc, name, srv.port[name], srv.proc[name].pid, args, scratch, run
                            )
                        except RuntimeError as e:
                            res = {"error": str(e)[:2000], "rate": None}
                        if not srv.alive(name):
                            res["error"] = (res.get("error", "") + " server exited").strip()
                        res["run"] = run + 1
                        samples[sc.key][name].append(res)
                        print(
                            f"run {run + 1}/{args.runs} {sc.key:<16} {name:<9} "
                            f"{fmt_rate(res.get('rate')):>10} {sc.unit:<8} "
                            f"p50/p99 {fmt_lat(res.get('p50_us'), res.get('p99_us'))}  "
                            f"gen {res.get('generator_cores', 0):.2f} "
                            f"srv {res.get('server_cores', 0):.2f} cores"
                            + (f"  ERROR {res['error'][:200]}" if "error" in res else "")
                            + (f"  bad={res['bad']}" if res.get("bad") else "")
                            + (
                                f"  closed_sockets={res['closed_sockets']} "
                                + ", ".join(
                                    f"{c['code']} {c['reason']!r}" for c in res["close_reasons"]
                                )
                                if res.get("closed_sockets")
                                else ""
                            ),
                            file=sys.stderr,
                            flush=True,
                        )
                finally:
                    srv.stop()
    finally:
        stop_all()

    medians = report(scenarios, samples, args, info)
    hopper_line = shlex.join(hopper_serve_cmd("PORT", args.hopper_arg)).replace("PORT", "<free>")
    write_results(
        args.out,
        started,
        info,
        {
            "method": {
                "runs": args.runs,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "statistic": "median over runs of each sample field",
                "servers": {
                    "hopper": hopper_line
                    + " (Granian, uvloop, 1 worker; hopper's default interface"
                    " unless --hopper-arg says otherwise)",
                    "hopper_args": args.hopper_arg,
                    "reference": "HOST=127.0.0.1 HTTP_PORT=<free> TCP_PORT=<free> "
                    "RATE_LIMIT_MAX_REQUESTS=1000000000 bun bunqueue/dist/main.js (in-memory)",
                    "bare": "bench/bare_app.py --interface asgi|rsgi (Granian, same settings) "
                    "vs bench/bare_bun.ts (Bun.serve)"
                    + (
                        ", both reading the whole body and parsing it (orjson.loads / "
                        "JSON.parse; WS: reqId from the parsed message)"
                        if args.bare_parse
                        else ", both answering without reading the body (WS: reqId by "
                        "string search)"
                    ),
                    "bare_parse": args.bare_parse,
                },
                "restart": "both servers started fresh for every scenario of every run",
                "order": "hopper first on odd runs, reference first on even runs",
                "push_body": PUSH_BODY,
                "push_body_bytes": len(PUSH_BODY),
                "payload_bytes": len(json.dumps(PAYLOAD, separators=(",", ":"))),
                "generator": "wrk 4.1 (Debian) with bench/wrk/*.lua, --timeout 10s, "
                f"{args.wrk_threads} thread(s) for push/bulk/bare, one thread per connection "
                "for pull+ack; WS: "
                + (
                    "bench/ws_push_client.ts on Bun (built-in WebSocket client)"
                    if args.ws_impl == "bun"
                    else "python websockets asyncio client (uvloop), compression off"
                ),
                "latency": "push/bulk/bare: wrk per-request histogram; pull+ack: GET sent -> "
                "ack answered, CLOCK_MONOTONIC in Lua; WS: PUSH / PUSHB sent -> reply "
                "received (includes queueing within the window)",
                "rate": 'responses that were 2xx with "ok":true per second '
                "(bulk: x jobs per request; ws_pushb: ok replies x jobs per PUSHB)",
                "ws": {
                    sc.key: {
                        **dataclasses.asdict(sc.ws),
                        "duration_s": sc.duration or args.duration,
                    }
                    for sc in scenarios
                    if sc.ws is not None
                },
                "ws_closes": "a socket the server closes before the client is done is "
                "counted in closed_sockets with its code and reason in close_reasons "
                "(socket index, seconds since start); the other sockets go on, and the "
                "rate is over the whole window",
                "cpu": "generator_cores from the generator's rusage / wall; server_cores from "
                "/proc/<pid>/stat utime+stime of the server process tree / wall; "
                "machine_busy_cores from /proc/stat; other_cores = machine - generator - "
                "server (loopback softirq and anything else running)",
                "pullack_prefill": f"{args.prefill_rate:g} jobs per second of "
                "warmup+duration, via bulk push",
                "ws_note": "both servers broadcast a 'pushed' event to every /ws client "
                "for each pushed job (on /ws/queues/<q> only that queue's); the client "
                "receives and skips them (events, events_in_window, event_rate, "
                "events_per_reply)",
            },
            "server_logs": str(scratch),
            "scenarios": {sc.key: {"label": sc.label, "unit": sc.unit} for sc in scenarios},
            "samples": samples,
            "median": medians,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
