"""Durable storage benchmark: `hopper serve --data-dir` side by side with the bunqueue
server persisting to SQLite (`DATA_PATH=<file>`).

Starts every server itself on free 127.0.0.1 ports, each with a fresh data directory in
the scratch dir (--tmp-dir), and reports the median of --runs runs:

  durable push c1/c16/c64  wrk, POST /queues/<q>/jobs {"data":{~90 B},"durable":true}
                           hopper: --fsync interval (a durable push is answered after its
                           record is fdatasync'ed, group commit); reference: DATA_PATH set
                           (bunqueue writes a durable push synchronously to SQLite)
  plain push c64           the same without "durable": hopper --memory / --fsync interval /
                           --fsync always, reference without / with DATA_PATH
  restart with N waiting   fill a data dir with --jobs (hopper) / --ref-jobs (reference)
                           waiting jobs through each engine's embedded API, then time the
                           server from process start to GET /health == 200, its peak RSS
                           (VmHWM) and the disk bytes per job; page cache cold (the data
                           files evicted with posix_fadvise) and warm
  sync probe               once, outside the measurements: strace -c on the server during
                           a short c16 push load, counting fsync/fdatasync per push

Every load is bounded in time and count; all traffic goes to 127.0.0.1. Servers and
helpers are always killed at the end (also on error or SIGTERM).

    .venv/bin/python bench/durability.py [--runs 3] [--duration 10] [--warmup 2]
    .venv/bin/python bench/durability.py --runs 1 --duration 2 --warmup 1 --jobs 100000 \\
        --ref-jobs 100000                                               # smoke run
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server as S  # bench/server.py: process, wrk and report helpers
from hopper.server_process import ServerProcess

HERE = S.HERE
ROOT = S.ROOT
PAYLOAD = S.PAYLOAD
PLAIN_BODY = S.PUSH_BODY
DURABLE_BODY = json.dumps({"data": PAYLOAD, "durable": True}, separators=(",", ":"))
BQ_QUEUE_MANAGER = (
    S.PEERS / "node_modules" / "bunqueue" / "dist" / "application" / "queueManager.js"
)
HOPPER_FLAGS = ("--data-dir", "--fsync", "--memory")
SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "msync", "syncfs", "sync")

# hopper configurations (extra `hopper serve` flags; None = needs no data dir)
HOPPER_MODES: dict[str, list[str] | None] = {
    "interval": ["--fsync", "interval"],
    "always": ["--fsync", "always"],
    "memory": None,
}
REF_MODES = ("sqlite", "memory")
# variables `hopper serve` would read instead of the flags given here (it takes DATA_PATH
# as its data dir too)
HOPPER_ENV = (
    "DATA_PATH",
    "HOPPER_DATA_DIR",
    "HOPPER_MEMORY",
    "HOPPER_FSYNC",
    "HOPPER_FSYNC_INTERVAL_MS",
    "HOPPER_SNAPSHOT_BYTES",
    "HOPPER_REPAIR",
)

# Fills a hopper data dir through the embedded engine: argv = data_dir queue n batch payload.
HOPPER_FILL = r"""
import json, sys, time
from hopper import Engine
d, queue, payload = sys.argv[1], sys.argv[2], sys.argv[5]
n, batch = int(sys.argv[3]), int(sys.argv[4])
t0 = time.monotonic()
try:
    e = Engine(data_dir=d)
except TypeError as exc:
    print(json.dumps({"error": f"Engine(data_dir=...) not supported: {exc}"}))
    sys.exit(3)
t_open = time.monotonic()
jobs = [{"data": json.loads(payload)}] * batch
pushed = 0
while pushed < n:
    k = min(batch, n - pushed)
    e.push_many(queue, jobs[:k])
    pushed += k
t_push = time.monotonic()
waiting = e.counts(queue)["waiting"]
e.close()
t_close = time.monotonic()
print(json.dumps({"pushed": pushed, "waiting": waiting, "open_s": t_open - t0,
                  "push_s": t_push - t_open, "close_s": t_close - t_push}))
"""

# Fills a bunqueue SQLite file through its embedded QueueManager (the class its server
# wraps) with `dataPath`, in pushBatch() calls; shutdown() flushes the write buffer and
# checkpoints the WAL (TRUNCATE). argv = queueManager.js dataPath queue n batch payload.
REF_FILL = r"""
const [bqPath, dataPath, queue, nStr, batchStr, payloadJson] = Bun.argv.slice(2);
const { QueueManager } = await import(bqPath);
const payload = JSON.parse(payloadJson);
const N = Number(nStr), B = Number(batchStr);
const t0 = Bun.nanoseconds();
const qm = new QueueManager({ dataPath });
const tOpen = Bun.nanoseconds();
let pushed = 0;
while (pushed < N) {
  const n = Math.min(B, N - pushed);
  const inputs = new Array(n);
  for (let k = 0; k < n; k++) inputs[k] = { data: payload };
  await qm.pushBatch(queue, inputs);
  pushed += n;
}
const tPush = Bun.nanoseconds();
const waiting = Number(qm.getStats().waiting);
qm.shutdown();
const tClose = Bun.nanoseconds();
console.log(JSON.stringify({ pushed, waiting, open_s: (tOpen - t0) / 1e9,
  push_s: (tPush - tOpen) / 1e9, close_s: (tClose - tPush) / 1e9 }));
process.exit(0);
"""


# --------------------------------------------------------------------------- helpers


def run_helper(cmd: list[str], *, cwd: Path, timeout: float, env: dict | None = None) -> dict:
    """Runs a fill helper (tracked so that SIGTERM kills it); returns its last stdout line
    parsed as JSON, or {"error": ...}."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    S._generator.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return {"error": f"timed out after {timeout:g}s: {shlex.join(cmd)[:300]}"}
    finally:
        S._generator.remove(p)
    lines = out.decode().strip().splitlines()
    try:
        res = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        res = {}
    if p.returncode != 0 and "error" not in res:
        res["error"] = f"exit {p.returncode}: {err.decode()[-1500:]}"
    return res


def dir_bytes(d: Path) -> tuple[int, int]:
    """(allocated bytes as du counts them, apparent bytes) of every file under d."""
    alloc = apparent = 0
    for root, _dirs, files in os.walk(d):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, f))
                alloc += st.st_blocks * 512
                apparent += st.st_size
    return alloc, apparent


def evict_page_cache(d: Path) -> int:
    """Drops the page-cache pages of the files under d only (fdatasync, then
    POSIX_FADV_DONTNEED); nothing else on the machine is touched. Returns files done."""
    n = 0
    for root, _dirs, files in os.walk(d):
        for f in files:
            try:
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
            except OSError:
                continue
            try:
                with contextlib.suppress(OSError):
                    os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


def vm_status(pids: list[int]) -> dict:
    """VmHWM / VmRSS (bytes) of each process, and their sums."""
    per = {}
    for pid in pids:
        vals = {}
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:", "Name:")):
                    k, v = line.split(":", 1)
                    vals[k] = v.strip() if k == "Name" else int(v.split()[0]) * 1024
        if "VmHWM" in vals:
            per[str(pid)] = vals
    return {
        "per_process": per,
        "hwm_sum_bytes": sum(v["VmHWM"] for v in per.values()),
        "hwm_max_bytes": max((v["VmHWM"] for v in per.values()), default=0),
        "rss_sum_bytes": sum(v["VmRSS"] for v in per.values()),
    }


def get_health(port: int, timeout: float = 5) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/health")
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    try:
        return r.status, json.loads(body)
    except json.JSONDecodeError:
        return r.status, {}


def wait_health(port: int, proc: subprocess.Popen, t0: float, limit: float) -> tuple[float, dict]:
    """Seconds from t0 until GET /health answers 200, polling every 5 ms."""
    deadline = t0 + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before /health was 200")
        try:
            status, body = get_health(port)
            if status == 200:
                return time.monotonic() - t0, body
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"/health not 200 on 127.0.0.1:{port} within {limit:g}s")


def waiting_of(body: dict) -> int | None:
    q = body.get("queues")
    return q.get("waiting") if isinstance(q, dict) else None


def fs_info(path: Path) -> dict:
    """Mount point, filesystem type, device and options of the filesystem holding path."""
    real = os.path.realpath(path)
    best: dict = {}
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            mnt = fields[4].encode().decode("unicode_escape")
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best.get("mount_point", "")):
                best = {
                    "mount_point": mnt,
                    "fstype": rfields[0],
                    "device": rfields[1],
                    "mount_options": fields[5],
                    "super_options": rfields[2] if len(rfields) > 2 else "",
                }
    return {"path": real, **best}


def fdatasync_probe(d: Path, n: int = 200, size: int = 4096) -> dict:
    """Latency of append + fdatasync of `size` bytes on the tmp dir's filesystem, the floor
    under a durable push answered one at a time."""
    f = d / "fdatasync_probe.bin"
    block = os.urandom(size)
    lat = []
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        f.unlink()
    lat.sort()
    return {
        "ops": n,
        "bytes_per_op": size,
        "p50_us": lat[n // 2] * 1e6,
        "p99_us": lat[min(n - 1, int(n * 0.99))] * 1e6,
        "mean_us": statistics.fmean(lat) * 1e6,
    }


def hopper_serve_help() -> tuple[str, dict[str, bool]]:
    try:
        out = subprocess.run(
            [*S.hopper_cmd(), "serve", "--help"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        out = f"error: {e}"
    return out, {
        flag: re.search(rf"(^|\s|\[){re.escape(flag)}\b", out) is not None for flag in HOPPER_FLAGS
    }


def help_lines(text: str) -> str:
    """The --data-dir / --fsync / --memory entries of `hopper serve --help`."""
    out, keep = [], False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("-"):
            keep = s.startswith((*HOPPER_FLAGS, "--snapshot-bytes", "--repair"))
        if keep:
            out.append(s)
    return " ".join(out)


# --------------------------------------------------------------------------- servers


class Server:
    """One server process under test with its own data dir."""

    def __init__(self, name: str, mode: str, scratch: Path, tag: str, data: Path | None) -> None:
        self.name, self.mode, self.tag = name, mode, tag
        self.scratch = scratch
        self.data = data  # hopper: the data dir; reference: the dir holding the SQLite file
        self.port = S.free_port()
        self.process: ServerProcess | None = None
        self.proc: subprocess.Popen | None = None
        self.t_spawn = 0.0

    def cmd_env(self) -> tuple[list[str], dict[str, str] | None, Path]:
        if self.name == "hopper":
            cmd = [*S.hopper_cmd(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
            extra = HOPPER_MODES[self.mode]
            if extra is None:
                cmd.append("--memory")
            else:
                assert self.data is not None
                cmd += ["--data-dir", str(self.data), *extra]
            env = dict(os.environ)
            for k in HOPPER_ENV:
                env.pop(k, None)
            return cmd, env, self.scratch
        env = dict(
            os.environ,
            HOST="127.0.0.1",
            HTTP_PORT=str(self.port),
            TCP_PORT=str(S.free_port()),
            RATE_LIMIT_MAX_REQUESTS="1000000000",
        )
        for k in ("DATA_PATH", "BUNQUEUE_DATA_PATH", "BQ_DATA_PATH", "SQLITE_PATH"):
            env.pop(k, None)
        if self.mode == "sqlite":
            assert self.data is not None
            env["DATA_PATH"] = str(self.data / "bunqueue.db")  # a file path, not a dir
        return [str(S.BUN), str(S.BUNQUEUE_MAIN)], env, S.PEERS

    def spawn(self) -> None:
        if self.data is not None:
            self.data.mkdir(parents=True, exist_ok=True)
        cmd, env, cwd = self.cmd_env()
        self.t_spawn = time.monotonic()
        self.process = S.spawn(
            cmd, port=self.port, cwd=cwd, env=env, log=self.scratch / f"{self.tag}.log"
        )
        self.proc = self.process.proc
        self.command = shlex.join(cmd)

    def start(self, limit: float = 60) -> float:
        self.spawn()
        assert self.proc is not None
        secs, _ = wait_health(self.port, self.proc, self.t_spawn, limit)
        return secs

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10) -> float:
        """SIGTERM (SIGKILL after `grace`: a persisting server may flush on exit);
        returns the seconds the server took to go away."""
        if self.process is None:
            return 0.0
        t0 = time.monotonic()
        S.stop(self.process, grace)
        return time.monotonic() - t0


# --------------------------------------------------------------------------- push load


class Case:
    def __init__(self, key: str, label: str, server: str, mode: str, conns: int, durable: bool):
        self.key, self.label = key, label
        self.server, self.mode, self.conns, self.durable = server, mode, conns, durable


def build_cases(args: argparse.Namespace) -> list[Case]:
    out = []
    for c in args.conns:
        out.append(
            Case(f"durable_c{c}.hopper", f"durable push c{c}", "hopper", "interval", c, True)
        )
        out.append(
            Case(f"durable_c{c}.reference", f"durable push c{c}", "reference", "sqlite", c, True)
        )
    c = args.plain_conns
    for mode in ("memory", "interval", "always"):
        out.append(Case(f"plain_c{c}.hopper_{mode}", f"plain push c{c}", "hopper", mode, c, False))
    for mode in REF_MODES:
        out.append(Case(f"plain_c{c}.ref_{mode}", f"plain push c{c}", "reference", mode, c, False))
    return out


def body_file(scratch: Path, durable: bool) -> Path:
    f = scratch / ("durable_body.json" if durable else "plain_body.json")
    if not f.exists():
        f.write_text(DURABLE_BODY if durable else PLAIN_BODY)
    return f


def push_load(srv: Server, case: Case, args, scratch: Path, q: str, seconds: float) -> dict:
    env = S.scenario_env(
        {
            "BENCH_PATH": f"/queues/{q}/jobs",
            "BENCH_BODY_FILE": str(body_file(scratch, case.durable)),
            "BENCH_MAX_REQ": str(S.MAX_REQ_PER_THREAD),
        }
    )
    cmd = S.wrk_cmd("push.lua", srv.port, min(case.conns, args.wrk_threads), case.conns, seconds)
    assert srv.proc is not None
    res = S.measure(cmd, env, srv.proc.pid, seconds)
    res["command"] = shlex.join(cmd)
    return res


def run_case(case: Case, args, scratch: Path, run: int, skip: dict[str, str]) -> dict:
    if case.key in skip:
        return {"error": skip[case.key], "rate": None, "skipped": True, "run": run + 1}
    tag = f"run{run + 1}-{case.key}"
    needs_data = case.mode not in ("memory",)
    data = scratch / f"data-{tag}" if needs_data else None
    srv = Server(case.server, case.mode, scratch, tag, data)
    res: dict = {"rate": None}
    try:
        start_s = srv.start()
        q = f"{case.key.split('.')[0].replace('_', '')}r{run + 1}"
        if args.warmup > 0:
            push_load(srv, case, args, scratch, q, args.warmup)
        res = push_load(srv, case, args, scratch, q, args.duration)
        res["start_s"] = start_s
        res["server_command"] = srv.command
        if data is not None:
            res["data_bytes_after"] = dir_bytes(data)[0]
    except RuntimeError as e:
        res = {"error": str(e)[:2000], "rate": None}
    finally:
        alive = srv.alive()
        srv.stop()
        if data is not None and not args.keep_data:
            shutil.rmtree(data, ignore_errors=True)
    if not alive:
        res["error"] = res.get("error", "") + f" server exited; see {scratch / (tag + '.log')}"
    res["run"] = run + 1
    return res


# --------------------------------------------------------------------------- sync probe


def parse_strace_c(text: str) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in SYNC_CALLS and parts[0][0].isdigit():
            # % time, seconds, usecs/call, calls, [errors,] syscall
            calls[parts[-1]] = int(parts[3])
    return calls


def sync_probe(case: Case, args, scratch: Path) -> dict:
    """Counts sync syscalls of the whole server process tree during a short push load, with
    strace attached (this slows the server a lot; only the ratio syncs / push is used)."""
    tag = f"syncprobe-{case.key}"
    data = scratch / f"data-{tag}"
    srv = Server(case.server, case.mode, scratch, tag, data)
    out = scratch / f"{tag}.strace"
    st = None
    try:
        srv.start()
        assert srv.proc is not None
        pids = S.proc_tree(srv.proc.pid)
        pargs = [a for p in pids for a in ("-p", str(p))]
        st = subprocess.Popen(
            [
                "strace",
                "-f",
                "-c",
                "-qq",
                "-e",
                "trace=" + ",".join(SYNC_CALLS),
                "-o",
                str(out),
                *pargs,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        S._generator.append(st)
        t_attach = time.monotonic()
        time.sleep(1.0)  # attach
        res = push_load(srv, case, args, scratch, "syncprobe", args.sync_probe_seconds)
        st.send_signal(signal.SIGINT)
        st.wait(30)
        traced_s = time.monotonic() - t_attach
        calls = parse_strace_c(out.read_text()) if out.exists() else {}
        total = sum(calls.values())
        pushes = res.get("ok", 0)
        return {
            "server_command": srv.command,
            "pids_traced": pids,
            "conns": case.conns,
            "seconds": args.sync_probe_seconds,
            "pushes_ok": pushes,
            "rate_under_strace": res.get("rate"),
            "sync_calls": calls,
            "syncs_total": total,
            "syncs_per_1000_pushes": total / pushes * 1000 if pushes else None,
            "traced_s": traced_s,
            "syncs_per_s": total / traced_s,
            "wrk_errors": res.get("errors"),
            "bad": res.get("bad"),
        }
    except (RuntimeError, OSError) as e:
        return {"error": str(e)[:2000]}
    finally:
        if st is not None:
            if st.poll() is None:
                st.kill()
                st.wait(5)
            if st in S._generator:
                S._generator.remove(st)
        srv.stop()
        if not args.keep_data:
            shutil.rmtree(data, ignore_errors=True)


# --------------------------------------------------------------------------- restart


def fill_hopper(d: Path, n: int, args, scratch: Path) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(PAYLOAD, separators=(",", ":"))
    t0 = time.monotonic()
    res = run_helper(
        [sys.executable, "-c", HOPPER_FILL, str(d), "restart", str(n), "1000", payload],
        cwd=scratch,
        timeout=args.fill_timeout,
    )
    res["method"] = "embedded Engine(data_dir=...).push_many() in batches of 1000, close()"
    if "error" in res and "not supported" in res["error"]:
        # fall back to the server's bulk endpoint
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        srv = Server("hopper", "interval", scratch, "fill-hopper", d)
        t0 = time.monotonic()
        try:
            srv.start()
            t1 = time.monotonic()
            S.bulk_push(srv.port, "restart", n, per_request=1000)
            t2 = time.monotonic()
            _, body = get_health(srv.port)
            res = {"pushed": n, "waiting": waiting_of(body), "open_s": t1 - t0, "push_s": t2 - t1}
        except (RuntimeError, OSError) as e:
            res = {"error": f"bulk fill failed: {e}"}
        finally:
            res["close_s"] = srv.stop(grace=120)
        res["method"] = (
            "hopper serve --data-dir, POST /queues/restart/jobs/bulk with 1000 jobs per "
            "request, then SIGTERM (embedded Engine(data_dir=) was not available)"
        )
    res["wall_s"] = time.monotonic() - t0
    return res


def fill_reference(d: Path, n: int, args, scratch: Path) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    script = scratch / "ref_fill.ts"
    script.write_text(REF_FILL)
    payload = json.dumps(PAYLOAD, separators=(",", ":"))
    t0 = time.monotonic()
    res = run_helper(
        [
            str(S.BUN),
            str(script),
            str(BQ_QUEUE_MANAGER),
            str(d / "bunqueue.db"),
            "restart",
            str(n),
            "1000",
            payload,
        ],
        cwd=S.PEERS,
        timeout=args.fill_timeout,
    )
    res["wall_s"] = time.monotonic() - t0
    res["method"] = (
        "embedded QueueManager({dataPath}).pushBatch() in batches of 1000, shutdown() "
        "(flushes the write buffer, PRAGMA wal_checkpoint(TRUNCATE), closes)"
    )
    return res


def restart_once(name: str, d: Path, n: int, cache: str, args, scratch: Path, tag: str) -> dict:
    evicted = evict_page_cache(d) if cache == "cold" else 0
    srv = Server(name, "interval" if name == "hopper" else "sqlite", scratch, tag, d)
    res: dict = {"cache": cache, "files_evicted": evicted}
    try:
        srv.spawn()
        assert srv.proc is not None
        secs, body = wait_health(srv.port, srv.proc, srv.t_spawn, args.restart_timeout)
        vm = vm_status(S.proc_tree(srv.proc.pid))
        cpu = S.tree_cpu_s(srv.proc.pid)
        res.update(
            health_s=secs,
            cpu_s_at_health=cpu,
            waiting_at_health=waiting_of(body),
            peak_rss_bytes=vm["hwm_sum_bytes"],
            peak_rss_max_process_bytes=vm["hwm_max_bytes"],
            memory_at_health=vm,
        )
        # the restart only counts as done once every job is back
        loaded_s = secs if waiting_of(body) == n else None
        deadline = srv.t_spawn + args.restart_timeout
        while loaded_s is None and time.monotonic() < deadline:
            time.sleep(0.02)
            with contextlib.suppress(OSError):
                _, body = get_health(srv.port)
                if waiting_of(body) == n:
                    loaded_s = time.monotonic() - srv.t_spawn
        res["all_loaded_s"] = loaded_s
        res["waiting_final"] = waiting_of(body)
        if loaded_s is None:
            res["error"] = f"waiting={waiting_of(body)} != {n} after {args.restart_timeout:g}s"
        elif loaded_s != secs:
            vm = vm_status(S.proc_tree(srv.proc.pid))
            res["memory_at_loaded"] = vm
            res["peak_rss_bytes"] = vm["hwm_sum_bytes"]
            res["peak_rss_max_process_bytes"] = vm["hwm_max_bytes"]
        res["server_command"] = srv.command
    except RuntimeError as e:
        res["error"] = str(e)[:2000]
    finally:
        res["stop_s"] = srv.stop(grace=120)
    return res


def restart_bench(args, scratch: Path, hopper_ok: bool, hopper_why: str) -> dict:
    out: dict = {}
    plan = []
    if hopper_ok:
        plan.append(("hopper", args.jobs))
    else:
        out["hopper"] = {"error": hopper_why}
    if not args.no_peer:
        plan.append(("reference", args.ref_jobs))
    for name, n in plan:
        d = scratch / f"data-restart-{name}"
        shutil.rmtree(d, ignore_errors=True)
        print(f"restart: filling {name} with {n:,} waiting jobs ...", file=sys.stderr, flush=True)
        fill = (fill_hopper if name == "hopper" else fill_reference)(d, n, args, scratch)
        alloc, apparent = dir_bytes(d)
        entry: dict = {
            "jobs": n,
            "fill": fill,
            "disk_bytes_after_fill": alloc,
            "disk_apparent_bytes_after_fill": apparent,
            "disk_bytes_per_job": alloc / n,
            "files_after_fill": sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()),
            "samples": [],
        }
        print(
            f"restart: {name} fill {fill.get('wall_s', 0):.1f}s "
            f"{'ERROR ' + fill['error'][:300] if 'error' in fill else ''} "
            f"disk {alloc / 1e6:.1f} MB = {alloc / n:.0f} B/job",
            file=sys.stderr,
            flush=True,
        )
        runs = args.runs if name == "hopper" else args.ref_restart_runs
        entry["runs"] = runs
        if "error" not in fill:
            for run in range(runs):
                for cache in args.cache:
                    r = restart_once(
                        name, d, n, cache, args, scratch, f"restart-{name}-r{run + 1}-{cache}"
                    )
                    r["run"] = run + 1
                    entry["samples"].append(r)
                    print(
                        f"restart run {run + 1}/{runs} {name:<9} {cache:<4} "
                        f"health {fmt_s(r.get('health_s'))} "
                        f"all loaded {fmt_s(r.get('all_loaded_s'))} "
                        f"peak RSS {fmt_mb(r.get('peak_rss_bytes'))}"
                        + (f"  ERROR {r['error'][:200]}" if "error" in r else ""),
                        file=sys.stderr,
                        flush=True,
                    )
            alloc2, apparent2 = dir_bytes(d)
            entry["disk_bytes_after_restarts"] = alloc2
            entry["disk_apparent_bytes_after_restarts"] = apparent2
            entry["files_after_restarts"] = sorted(
                str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()
            )
        entry["median"] = {
            cache: {
                f: S.med([s for s in entry["samples"] if s["cache"] == cache], f)
                for f in ("health_s", "all_loaded_s", "peak_rss_bytes", "cpu_s_at_health", "stop_s")
            }
            for cache in args.cache
        }
        if n != args.jobs:
            scale = args.jobs / n
            entry["extrapolated_to_jobs"] = {
                "jobs": args.jobs,
                "note": f"linear extrapolation x{scale:g} from {n:,} jobs, NOT measured",
                **{
                    cache: {
                        f: (v * scale if v is not None else None)
                        for f, v in entry["median"][cache].items()
                        if f in ("health_s", "all_loaded_s")
                    }
                    for cache in args.cache
                },
            }
        if n != args.jobs and n >= 100_000:
            entry["per_100k"] = {
                cache: {
                    f: (v / n * 100_000 if v is not None else None)
                    for f, v in entry["median"][cache].items()
                    if f in ("health_s", "all_loaded_s")
                }
                for cache in args.cache
            }
        out[name] = entry
        if not args.keep_data:
            shutil.rmtree(d, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- report


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def fmt_mb(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 2**20:,.0f} MiB"


def pct(a: float | None, b: float | None) -> float | None:
    """Slowdown of a relative to b in percent (positive = a is slower)."""
    return None if not a or not b else (1 - a / b) * 100


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def fmt_x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def report(cases: list[Case], samples: dict, restart: dict, probes: dict, args, info: dict) -> dict:
    fields = ("rate", "p50_us", "p99_us", "server_cores", "generator_cores", "other_cores")
    medians = {c.key: {f: S.med(samples[c.key], f) for f in fields} for c in cases}
    m = lambda key, f="rate": medians.get(key, {}).get(f)  # noqa: E731
    conns = args.conns
    pc = args.plain_conns
    derived: dict = {
        "hopper_durable_c64_over_c1": ratio(
            m(f"durable_c{max(conns)}.hopper"), m(f"durable_c{min(conns)}.hopper")
        ),
        "hopper_durable_scaling_target": ">= 20x",
        # what c64 / c1 could reach if durable c64 ran as fast as plain in-memory c64
        "hopper_memory_plain_over_durable_c1": ratio(
            m(f"plain_c{pc}.hopper_memory"), m(f"durable_c{min(conns)}.hopper")
        ),
        "hopper_over_reference_durable": {
            f"c{c}": ratio(m(f"durable_c{c}.hopper"), m(f"durable_c{c}.reference")) for c in conns
        },
        "hopper_plain_interval_slowdown_pct_vs_memory": pct(
            m(f"plain_c{pc}.hopper_interval"), m(f"plain_c{pc}.hopper_memory")
        ),
        "hopper_plain_always_slowdown_pct_vs_memory": pct(
            m(f"plain_c{pc}.hopper_always"), m(f"plain_c{pc}.hopper_memory")
        ),
        "hopper_plain_slowdown_target": "<= 15%",
        "reference_plain_sqlite_slowdown_pct_vs_memory": pct(
            m(f"plain_c{pc}.ref_sqlite"), m(f"plain_c{pc}.ref_memory")
        ),
    }
    # the same slowdown paired within each run (servers measured minutes apart otherwise)
    paired = []
    for a, b in zip(
        samples.get(f"plain_c{pc}.hopper_interval", []),
        samples.get(f"plain_c{pc}.hopper_memory", []),
        strict=False,
    ):
        if pct(a.get("rate"), b.get("rate")) is not None:
            paired.append(pct(a["rate"], b["rate"]))
    derived["hopper_plain_interval_slowdown_pct_per_run"] = paired

    print(
        f"\nmedian of {args.runs} runs x {args.duration:g} s; {info['cpu_model']}, "
        f"{info['nproc']} cores (shared by wrk and the server), kernel {info['kernel']}; "
        f"data dirs on {info['storage']['fstype']} ({info['storage']['device']}, "
        f"{info['storage']['mount_point']}), 4 KiB append+fdatasync p50 "
        f"{info['fdatasync_probe']['p50_us']:.0f} us; hopper {info['hopper']}, "
        f"bunqueue {info['bunqueue']} on Bun {info['bun']}\n"
    )
    print(
        "| durable push (pushes/s) | hopper --fsync interval | bunqueue DATA_PATH | hopper / ref "
        "| hopper p50 / p99 | ref p50 / p99 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for c in conns:
        h, r = f"durable_c{c}.hopper", f"durable_c{c}.reference"
        print(
            f"| {c} conn | {S.fmt_rate(m(h))} | {S.fmt_rate(m(r))} | {fmt_x(ratio(m(h), m(r)))} "
            f"| {S.fmt_lat(m(h, 'p50_us'), m(h, 'p99_us'))} "
            f"| {S.fmt_lat(m(r, 'p50_us'), m(r, 'p99_us'))} |"
        )
    sc = derived["hopper_durable_c64_over_c1"]
    ceil = derived["hopper_memory_plain_over_durable_c1"]
    print(
        f"\nhopper durable c{max(conns)} / c{min(conns)}: {fmt_x(sc)} (target >= 20x; "
        f"plain --memory c{pc} / durable c{min(conns)}, the ceiling of that ratio here: "
        f"{fmt_x(ceil)})\n"
    )

    print(f"| plain push, {pc} conn | pushes/s | p50 / p99 | vs no persistence |")
    print("|---|---:|---:|---:|")
    rows = [
        ("hopper --memory", f"plain_c{pc}.hopper_memory", None),
        ("hopper --fsync interval (default)", f"plain_c{pc}.hopper_interval", "hopper_memory"),
        ("hopper --fsync always", f"plain_c{pc}.hopper_always", "hopper_memory"),
        ("bunqueue in-memory", f"plain_c{pc}.ref_memory", None),
        ("bunqueue DATA_PATH (SQLite)", f"plain_c{pc}.ref_sqlite", "ref_memory"),
    ]
    for label, key, base in rows:
        vs = "-"
        if base is not None:
            s = pct(m(key), m(f"plain_c{pc}.{base}"))
            vs = "n/a" if s is None else f"{-s:+.1f}%"
        print(
            f"| {label} | {S.fmt_rate(m(key))} | {S.fmt_lat(m(key, 'p50_us'), m(key, 'p99_us'))} "
            f"| {vs} |"
        )
    sd = derived["hopper_plain_interval_slowdown_pct_vs_memory"]
    print(
        f"\nhopper plain-push slowdown --fsync interval vs --memory: "
        f"{'n/a' if sd is None else f'{sd:.1f}%'} (target <= 15%; per run: "
        f"{', '.join(f'{x:.1f}%' for x in paired) or 'n/a'})"
    )

    if restart:
        print("\n| restart with N waiting jobs | hopper | bunqueue |")
        print("|---|---:|---:|")
        pair = (restart.get("hopper", {}), restart.get("reference", {}))

        def row(label: str, path: tuple, fmt) -> None:
            cells = []
            for e in pair:
                v: object = e
                for k in path:
                    v = v.get(k) if isinstance(v, dict) else None
                cells.append("n/a" if v is None else fmt(v))
            print(f"| {label} | {cells[0]} | {cells[1]} |")

        row("waiting jobs", ("jobs",), lambda v: f"{v:,}")
        row("fill through the embedded API", ("fill", "wall_s"), fmt_s)
        for cache in args.cache:
            row(f"start -> /health 200 ({cache} cache)", ("median", cache, "health_s"), fmt_s)
            row(
                f"start -> all jobs visible ({cache} cache)",
                ("median", cache, "all_loaded_s"),
                fmt_s,
            )
            row(f"peak RSS, VmHWM ({cache} cache)", ("median", cache, "peak_rss_bytes"), fmt_mb)
        row("disk bytes / waiting job", ("disk_bytes_per_job",), lambda v: f"{v:.0f}")
        for name, e in zip(("hopper", "bunqueue"), pair, strict=True):
            if e.get("extrapolated_to_jobs"):
                x = e["extrapolated_to_jobs"]
                print(
                    f"\n{name}: {x['note']}: "
                    + ", ".join(f"{c} /health {fmt_s(x[c]['health_s'])}" for c in args.cache)
                )
            if "error" in e:
                print(f"\n{name} restart: {e['error']}")

    if probes:
        print("\n| sync probe (strace -c, c16) | sync calls | per 1000 pushes | per s |")
        print("|---|---|---:|---:|")
        for key, p in probes.items():
            if "error" in p:
                print(f"| {key} | error: {p['error'][:60]} | n/a | n/a |")
            else:
                per = p["syncs_per_1000_pushes"]
                print(
                    f"| {key} | {p['sync_calls'] or 'none'} | "
                    f"{'n/a' if per is None else f'{per:.1f}'} | {p['syncs_per_s']:.0f} |"
                )

    problems = []
    for c in cases:
        for s in samples[c.key]:
            errs = s.get("errors") or {}
            nerr = sum(errs.values()) if isinstance(errs, dict) else 0
            if (s.get("bad") or nerr or s.get("error")) and not s.get("skipped"):
                problems.append(
                    f"{c.key} run {s.get('run')}: bad={s.get('bad', 0)} wrk_errors={errs} "
                    f"{s.get('sample_bad', '')!r} {s.get('error', '')[:300]}"
                )
    skipped = sorted({c.key for c in cases for s in samples[c.key] if s.get("skipped")})
    if skipped:
        print(f"\nskipped: {', '.join(skipped)}: {samples[skipped[0]][0]['error']}")
    if problems:
        print("\nproblems seen:")
        for p in problems:
            print("  " + p)
    return {"medians": medians, "derived": derived, "problems": problems}


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per push measurement")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    p.add_argument("--conns", default="1,16,64", help="durable push connection counts")
    p.add_argument("--plain-conns", type=int, default=64, help="connections for plain pushes")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1_000_000, help="hopper restart: waiting jobs")
    p.add_argument("--ref-jobs", type=int, default=1_000_000, help="reference restart: jobs")
    p.add_argument(
        "--ref-restart-runs",
        type=int,
        default=1,
        help="reference restarts per cache state (one takes ~2 min at 1M jobs here)",
    )
    p.add_argument("--cache", default="cold,warm", help="restart page-cache states: cold,warm")
    p.add_argument("--restart-timeout", type=float, default=600.0)
    p.add_argument("--fill-timeout", type=float, default=1800.0)
    p.add_argument("--no-peer", action="store_true", help="hopper only")
    p.add_argument("--skip-push", action="store_true", help="skip the push measurements")
    p.add_argument("--skip-restart", action="store_true", help="skip the restart measurement")
    p.add_argument("--no-sync-probe", action="store_true", help="skip the strace sync probe")
    p.add_argument("--sync-probe-seconds", type=float, default=3.0)
    p.add_argument(
        "--tmp-dir",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")),
        help="where the data dirs go (its filesystem decides the fdatasync cost)",
    )
    p.add_argument("--keep-data", action="store_true", help="keep the data dirs")
    p.add_argument("--out", type=Path, default=HERE / "results" / "durability.json")
    args = p.parse_args()
    args.conns = [int(c) for c in str(args.conns).split(",") if c]
    args.cache = [c for c in str(args.cache).split(",") if c]
    if not set(args.cache) <= {"cold", "warm"}:
        p.error("--cache takes cold and/or warm")

    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    if not S.BUN.exists() and not args.no_peer:
        subprocess.run(["npm", "ci", "--silent"], cwd=S.PEERS, check=True)

    def on_signal(signum, _frame):
        S.stop_all()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(S.stop_all)

    scratch = args.tmp_dir.resolve() / f"hopper-bench-durability-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    info = S.machine_info()
    info["tmp_dir"] = str(args.tmp_dir)
    info["storage"] = fs_info(scratch)
    info["fdatasync_probe"] = fdatasync_probe(scratch)
    help_text, flags = hopper_serve_help()
    info["hopper_serve_flags"] = flags
    info["hopper_durability_help"] = help_lines(help_text)
    missing = [f for f, ok in flags.items() if not ok]
    hopper_why = ""
    if missing:
        hopper_why = (
            f"`hopper serve` has no {', '.join(missing)} (durability not installed yet: "
            "the extension updates after `make install`); hopper cases skipped"
        )
        print("WARNING: " + hopper_why, file=sys.stderr, flush=True)

    cases = build_cases(args)
    skip: dict[str, str] = {}
    for c in cases:
        if c.server == "hopper":
            need = "--memory" if c.mode == "memory" else "--data-dir"
            if not flags[need] or (c.mode != "memory" and not flags["--fsync"]):
                skip[c.key] = hopper_why
        elif args.no_peer:
            skip[c.key] = "--no-peer"
    if args.no_peer:
        cases = [c for c in cases if c.server == "hopper"]
    samples: dict = {c.key: [] for c in cases}
    started = time.time()
    restart: dict = {}
    probes: dict = {}
    try:
        if not args.skip_push:
            groups: dict[str, list[Case]] = {}
            for c in cases:
                groups.setdefault(c.key.split(".")[0], []).append(c)
            for run in range(args.runs):
                for group in groups.values():
                    # alternate who goes first so drift does not favour one side
                    order = group if run % 2 == 0 else group[::-1]
                    for c in order:
                        res = run_case(c, args, scratch, run, skip)
                        samples[c.key].append(res)
                        if res.get("skipped"):
                            continue
                        print(
                            f"run {run + 1}/{args.runs} {c.key:<28} "
                            f"{S.fmt_rate(res.get('rate')):>8} pushes/s  p50/p99 "
                            f"{S.fmt_lat(res.get('p50_us'), res.get('p99_us'))}  "
                            f"srv {res.get('server_cores', 0):.2f} gen "
                            f"{res.get('generator_cores', 0):.2f} cores"
                            + (f"  ERROR {res['error'][:300]}" if "error" in res else "")
                            + (
                                f"  bad={res['bad']} {res.get('sample_bad', '')!r}"
                                if res.get("bad")
                                else ""
                            ),
                            file=sys.stderr,
                            flush=True,
                        )
        if not args.no_sync_probe and shutil.which("strace"):
            c16 = 16
            for c in (
                Case("durable.hopper", "", "hopper", "interval", c16, True),
                Case("durable.reference", "", "reference", "sqlite", c16, True),
                Case("plain.hopper_interval", "", "hopper", "interval", c16, False),
                Case("plain.ref_sqlite", "", "reference", "sqlite", c16, False),
            ):
                if c.server == "hopper" and missing:
                    probes[c.key] = {"error": hopper_why}
                    continue
                if c.server == "reference" and args.no_peer:
                    continue
                probes[c.key] = sync_probe(c, args, scratch)
                print(
                    f"sync probe {c.key}: {probes[c.key].get('sync_calls')} "
                    f"per 1000 pushes {probes[c.key].get('syncs_per_1000_pushes')} "
                    f"{probes[c.key].get('error', '')[:300]}",
                    file=sys.stderr,
                    flush=True,
                )
        if not args.skip_restart:
            restart = restart_bench(args, scratch, not missing, hopper_why)
    finally:
        S.stop_all()

    summary = report(cases, samples, restart, probes, args, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "command": shlex.join([sys.executable, *sys.argv]),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "elapsed_s": time.time() - started,
                "machine": info,
                "method": method_text(args),
                "scratch_dir": str(scratch),
                "cases": {
                    c.key: {
                        "label": c.label,
                        "server": c.server,
                        "mode": c.mode,
                        "conns": c.conns,
                        "durable_body": c.durable,
                    }
                    for c in cases
                },
                "samples": samples,
                "median": summary["medians"],
                "derived": summary["derived"],
                "restart": restart,
                "sync_probe": probes,
                "problems": summary["problems"],
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def method_text(args) -> dict:
    return {
        "runs": args.runs,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "statistic": "median over runs of each sample field",
        "servers": {
            "hopper": "hopper serve --host 127.0.0.1 --port <free> "
            "--data-dir <scratch>/data-<case> "
            "--fsync interval|always, or --memory (Granian, 1 worker)",
            "reference": "HOST=127.0.0.1 HTTP_PORT=<free> TCP_PORT=<free> "
            "RATE_LIMIT_MAX_REQUESTS=1000000000 [DATA_PATH=<scratch>/data-<case>/bunqueue.db] "
            "bun bunqueue/dist/main.js; DATA_PATH is the SQLite database *file* (bun:sqlite "
            "Database(path, {create: true})), opened with journal_mode=WAL, "
            "synchronous=NORMAL",
        },
        "fresh": "every push measurement gets a freshly started server and an empty data dir, "
        "deleted afterwards",
        "order": "within each scenario the servers/configs are measured one after the other, "
        "never at the same time; the order reverses on every other run",
        "durable_body": DURABLE_BODY,
        "plain_body": PLAIN_BODY,
        "generator": f"wrk 4.1 + bench/wrk/push.lua (BENCH_BODY_FILE), {args.wrk_threads} "
        'thread(s), --timeout 10s; a push counts if 2xx with "ok":true',
        "latency": "wrk per-request histogram p50 / p99",
        "durable_semantics": {
            "hopper": "durable:true is answered after the record is fdatasync'ed (group commit: "
            "one fdatasync shared by the producers waiting at that moment)",
            "reference": "durable:true skips bunqueue's 10 ms / 100-job write buffer and runs "
            "the INSERT synchronously; with WAL + synchronous=NORMAL SQLite does not sync the "
            "WAL on commit (only at checkpoints), see sync_probe",
        },
        "restart": "fill: hopper via embedded Engine(data_dir).push_many (batches of 1000) + "
        "close(); reference via embedded QueueManager({dataPath}).pushBatch (batches of 1000) "
        "+ shutdown(). Then per run and cache state: spawn the server on that data, time from "
        "Popen to the first GET /health == 200 (5 ms polling), read VmHWM of every process in "
        "its tree (hopper = Granian main + worker; bunqueue = one bun process) at once, and "
        "poll /health until queues.waiting == N ('all jobs visible'; VmHWM is read again "
        "then if later); SIGTERM (grace 120 s). peak_rss_bytes = sum of VmHWM over the tree. "
        "cold = the data files' page-cache pages dropped first (fdatasync + "
        "posix_fadvise DONTNEED on those files only), warm = right after the cold start. "
        f"Runs: hopper --runs ({args.runs}), reference --ref-restart-runs "
        f"({args.ref_restart_runs}) per cache state. Extrapolation, when --ref-jobs != "
        "--jobs, is linear and labelled; bunqueue's load time is not linear in the job "
        "count (see README), so prefer measuring at --jobs",
        "disk": "du-style allocated bytes (st_blocks * 512) of the data dir after the fill "
        "(and after the restarts), divided by the job count",
        "sync_probe": "once per config, fresh server, strace -f -c -e "
        f"trace={','.join(SYNC_CALLS)} "
        f"attached to every process of the server tree during {args.sync_probe_seconds:g} s of "
        "wrk push load at 16 conns; strace slows the server, so only syncs per push / per s "
        "are meaningful, not the rate",
        "fdatasync_probe": "200 x (append 4 KiB + fdatasync) in the scratch dir from Python",
    }


if __name__ == "__main__":
    sys.exit(main())
