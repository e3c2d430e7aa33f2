"""Cluster benchmark: hopper with 3 brokers vs bunqueue 2.9.5 with 3 brokers on the same
PostgreSQL, a single `hopper serve` on its local WAL, and failover time.

One PostgreSQL (tests/postgres_server.py: initdb + pg_ctl on a free loopback port,
fsync=on, synchronous_commit=on) serves the whole run. Every cell gets a fresh database
(created before, dropped after) and freshly started servers:

  hopper cluster   3 x `hopper serve` with HOPPER_POSTGRES_URL=<fresh db>, HOPPER_BROKER_ID
                   a/b/c, HOPPER_FSYNC=--fsync (default always: an answer waits for the
                   PostgreSQL commit of its log row); a owns the slot, b and c relay
  bunqueue cluster 3 x bunqueue 2.9.5 (bun bench/peers/.../bunqueue/dist/main.js) with
                   BUNQUEUE_POSTGRES_URL=<fresh db>, BUNQUEUE_BROKER_ID b1/b2/b3 (every push,
                   claim and ack is its own PostgreSQL transaction, synchronous_commit=on)
  hopper single    1 x `hopper serve --data-dir <fresh dir> --fsync <same policy>` (its
                   local WAL, no PostgreSQL)
  hopper cluster, owner only
                   the hopper cluster again, all three generators on the owner's public
                   port (a broker's public port is always its front, which relays to the
                   owner's backend: here within the owner's process)

Load: the compiled generator (`hopper._engine.LoadGen`, the one `hopper bench` runs), one
generator per broker, all three started together in this process, each --conns HTTP/1.1
keep-alive connections on a queue of its own (cl0, cl1, cl2). The single server gets the
same three generators on its one port. Cells:

  push      POST /queues/<q>/jobs (~90-byte payload), --warmup s then --duration s
  pullack   GET /queues/<q>/jobs then POST /jobs/<id>/ack on a queue pre-filled untimed
            (bulk pushes of 100) with enough jobs for the run (from the same run's push rate)

The rate of a cell is the three generators' measured jobs together over the longest of
their measured windows. CPU (cores = CPU s / wall s) is sampled around the timed phase for
each broker's process tree (per thread name for hopper: relay vs engine), the PostgreSQL
server tree, the generator (this process) and the whole machine. Before each sample the
machine must be quiet (bench/tcp.py's wait_idle); a sample with other work on the machine
is measured again. Medians over --runs; the order of the systems rotates between runs.

Failover (--failovers, default 20, with 1 slot and again with --slots slots): a 3-broker
hopper cluster; each round waits until every slot is owned by the broker ranked first for
it, SIGKILLs the process group of the broker owning the most slots (`hopper_slots`), then
pushes through the two survivors' public HTTP ports (alternating, 1 s timeout per try)
to a queue of each slot it owned until each answered: the failover time is kill -> the
last of those answers. The killed broker is started again (a standby) before the next
round. At the end every acknowledged push must be handed out by a drain of the queues.

    .venv/bin/python bench/cluster.py                        # 3 runs + 20 failovers, ~11 min
    .venv/bin/python bench/cluster.py --runs 1 --duration 3 --failovers 3   # smoke run
    .venv/bin/python bench/cluster.py --parts failover
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import server as S  # bench/server.py: CPU sampling, machine info, peer paths
from hopper._engine import LoadGen, queue_slot
from hopper.bench.histograms import Series, value_ms
from hopper.bench.runner import Options, Plan, config
from hopper.server_process import ServerProcess, free_port
from tcp import add_quiet_options, quiet_method, wait_idle  # bench/tcp.py: a quiet machine

sys.path.insert(0, str(S.ROOT / "tests"))
import postgres_server as PG
from cluster_brokers import wait_settled

Sample = dict[str, Any]
SYSTEMS = (
    "hopper_cluster",
    "bunqueue_cluster",
    "hopper_single",
    "hopper_cluster_owner_only",
    "hopper_cluster_slots",
)
# hopper_cluster_owner_only: the same 3 brokers, but all 3 generators on the owner's public
# port (its own front relays to its own backend in-process: no hop to another broker), which
# tells whether relaying through another broker costs more than the owner's own front.
# hopper_cluster_slots: the 3 brokers with --slots slots (each broker's front routes each
# request to its queue's slot); generator i's queue is in a slot that broker i owns where
# the slots allow, so the engine work is spread over the brokers.
CELLS = ("push", "pullack")
RATE_LIMIT = "2000000000"  # bunqueue's default HTTP rate limit would cap a cell
BROKERS = 3

_servers: list[ServerProcess] = []  # running now: stopped on exit / signal
_gens: list[Any] = []  # load generators running now
_pg: list[PG.Postgres] = []


# --------------------------------------------------------------------------- PostgreSQL


def psql(pg: PG.Postgres, db: str, sql: str, timeout: float = 30) -> list[str]:
    out = subprocess.run(
        [str(PG.bin_dir() / "psql"), db_url(pg, db), "-Atc", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return out.stdout.split()


def db_url(pg: PG.Postgres, db: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{pg.port}/{db}"


def create_db(pg: PG.Postgres, db: str) -> None:
    psql(pg, "postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    psql(pg, "postgres", f"CREATE DATABASE {db}")


def drop_db(pg: PG.Postgres, db: str) -> None:
    with contextlib.suppress(subprocess.SubprocessError):
        psql(pg, "postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def pg_counters(pg: PG.Postgres, db: str) -> tuple[int, int]:
    """(WAL bytes written so far, server-wide: exact; commits in `db`: the statistics a
    backend reports at most once a second, so +-1 s of commits at either end)."""
    sql = (
        "SELECT pg_current_wal_lsn() - '0/0', "
        f"(SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}')"
    )
    out = subprocess.run(
        [str(PG.bin_dir() / "psql"), db_url(pg, db), "-AtF", " ", "-c", sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    return int(float(out[0])), int(out[1])


def postmaster_pid(pg: PG.Postgres) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])


def slot_owner(pg: PG.Postgres, db: str) -> str:
    """The owner of slot 0 (a one-slot cluster's only slot), empty before any took it."""
    return slot_owners(pg, db).get(0, "")


# --------------------------------------------------------------------------- servers


@dataclass
class Broker:
    name: str
    srv: ServerProcess

    @property
    def url(self) -> str:
        return self.srv.url


@dataclass
class System:
    """The servers of one cell: their brokers, database (None: local WAL) and scratch."""

    kind: str
    brokers: list[Broker]
    db: str | None
    data: Path | None = None
    owner: str = ""
    commands: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=lambda: [f"cl{i}" for i in range(BROKERS)])
    owners: dict[int, str] = field(default_factory=dict)


def hopper_broker(
    pg: PG.Postgres,
    db: str,
    name: str,
    log_dir: Path,
    fsync: str,
    lease_ms: int | None = None,
    slots: int = 1,
) -> ServerProcess:
    env = {
        "HOPPER_SLOTS": str(slots),
        "HOPPER_POSTGRES_URL": db_url(pg, db),
        "HOPPER_BROKER_ID": name,
        "HOPPER_NAMESPACE": "default",
        "HOPPER_FSYNC": fsync,
    }
    if lease_ms is not None:
        env["HOPPER_SLOT_LEASE_MS"] = str(lease_ms)
    return ServerProcess.hopper(log=log_dir / f"hopper-{db}-{name}.log", env=env)


def bunqueue_broker(pg: PG.Postgres, db: str, name: str, log_dir: Path) -> ServerProcess:
    http_port, tcp_port = free_port(), free_port()
    env = dict(
        os.environ,
        HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        TCP_PORT=str(tcp_port),
        RATE_LIMIT_MAX_REQUESTS=RATE_LIMIT,
        BUNQUEUE_POSTGRES_URL=db_url(pg, db),
        BUNQUEUE_BROKER_ID=name,
    )
    for k in ("DATA_PATH", "BUNQUEUE_DATA_PATH", "BQ_DATA_PATH", "AUTH_TOKENS"):
        env.pop(k, None)
    srv = ServerProcess(
        [str(S.BUN), str(S.BUNQUEUE_MAIN)],
        port=http_port,
        log=log_dir / f"bunqueue-{db}-{name}.log",
        env=env,
        cwd=S.PEERS,
        label="bunqueue",
    )
    srv.tcp_port = tcp_port
    return srv


def launch(srv: ServerProcess) -> None:
    _servers.append(srv)
    srv.start(timeout=60)


def slot_owners(pg: PG.Postgres, db: str) -> dict[int, str]:
    rows = psql(pg, db, "SELECT slot || '=' || owner FROM hopper_slots")
    return {int(s): o for s, o in (r.split("=", 1) for r in rows)}


def settle(pg: PG.Postgres, db: str, names: list[str], slots: int) -> dict[int, str]:
    """Waits (bounded) until every slot is owned by the broker ranked first for it."""
    return wait_settled(lambda: slot_owners(pg, db), names, slots, timeout=60)


def spread_queues(owners: dict[int, str], names: list[str], slots: int) -> list[str]:
    """One queue per generator, in a slot broker i owns where one exists (else any)."""
    queues = []
    for i, name in enumerate(names):
        mine = [s for s, o in sorted(owners.items()) if o == name] or [i % slots]
        slot = mine[0]
        queues.append(
            next(q for q in (f"cl{i}-{n}" for n in range(10_000)) if queue_slot(q, slots) == slot)
        )
    return queues


def start_system(
    kind: str, pg: PG.Postgres, tag: str, scratch: Path, fsync: str, slots: int = 1
) -> System:
    if kind == "hopper_single":
        data = scratch / f"data-{tag}"
        srv = ServerProcess.hopper(
            ["--data-dir", str(data), "--fsync", fsync], log=scratch / f"hopper-single-{tag}.log"
        )
        launch(srv)
        return System(kind, [Broker("single", srv)], None, data, "", [shlex.join(srv.command)])
    db = f"cl_{tag}".replace("-", "_")
    create_db(pg, db)
    system = System(kind, [], db)
    hopper = kind.startswith("hopper_cluster")
    names = ("a", "b", "c") if hopper else ("b1", "b2", "b3")
    slots = slots if kind == "hopper_cluster_slots" else 1
    for name in names:  # one after the other: the first takes the slot
        if hopper:
            srv = hopper_broker(pg, db, name, scratch, fsync, slots=slots)
        else:
            srv = bunqueue_broker(pg, db, name, scratch)
        system.brokers.append(Broker(name, srv))
        launch(srv)
        system.commands.append(shlex.join(srv.command))
    if hopper and slots > 1:
        system.owners = settle(pg, db, list(names), slots)
        system.queues = spread_queues(system.owners, list(names), slots)
    elif hopper:
        system.owner = slot_owner(pg, db)
    else:
        # bunqueue in PostgreSQL mode: its tables exist and all brokers registered
        tables = psql(pg, db, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bunqueue_%'")
        brokers = psql(pg, db, "SELECT count(*) FROM bunqueue_brokers")
        if int(tables[0]) == 0 or int(brokers[0]) != BROKERS:
            raise RuntimeError(f"bunqueue is not on PostgreSQL: {tables} tables, {brokers}")
    return system


def stop_system(system: System, pg: PG.Postgres) -> list[int | None]:
    codes = []
    for b in system.brokers:
        codes.append(b.srv.stop(10.0))
        if b.srv in _servers:
            _servers.remove(b.srv)
    if system.db:
        drop_db(pg, system.db)
    if system.data:
        shutil.rmtree(system.data, ignore_errors=True)
    return codes


def stop_all() -> None:
    for g in list(_gens):
        with contextlib.suppress(Exception):
            g.stop()
    for srv in list(_servers):
        srv.kill()
        _servers.remove(srv)
    for pg in list(_pg):
        PG.stop(pg)
        _pg.remove(pg)


# --------------------------------------------------------------------------- CPU


def proc_cpu(pid: int) -> float:
    """utime+stime of one process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / S.CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def threads_cpu(root: int) -> dict[str, float]:
    """CPU seconds of every thread of a process tree, summed per `<process comm>/<thread
    comm>` (hopper names its threads: Granian workers, tokio relays, the engine's)."""
    out: dict[str, float] = {}
    for pid in S.proc_tree(root):
        try:
            pcomm = Path(f"/proc/{pid}/comm").read_text().strip()
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            f = stat.rsplit(")", 1)[1].split()
            key = f"{pcomm}/{comm}"
            out[key] = out.get(key, 0.0) + (int(f[11]) + int(f[12])) / S.CLK_TCK
    return out


@dataclass
class CpuSnap:
    t: float
    busy: float
    total: float
    self_s: float
    brokers: dict[str, dict[str, float]]
    pg: float

    @classmethod
    def take(cls, system: System, pg: PG.Postgres | None) -> CpuSnap:
        busy, total = S.machine_busy()
        t = os.times()
        return cls(
            t=time.monotonic(),
            busy=float(busy),
            total=float(total),
            self_s=t.user + t.system,
            brokers={b.name: threads_cpu(b.srv.pid) for b in system.brokers},
            pg=S.tree_cpu_s(postmaster_pid(pg)) if pg is not None else 0.0,
        )


def cpu_delta(a: CpuSnap, b: CpuSnap, system: System, with_pg: bool) -> Sample:
    wall = b.t - a.t
    ncpu = os.cpu_count() or 1
    per_broker: Sample = {}
    total_servers = 0.0
    for name in b.brokers:
        keys = set(a.brokers[name]) | set(b.brokers[name])
        threads = {
            k: (b.brokers[name].get(k, 0.0) - a.brokers[name].get(k, 0.0)) / wall for k in keys
        }
        threads = {k: v for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.005}
        cores = sum(threads.values())
        total_servers += cores
        role = "owner" if name == system.owner else ("front" if system.owner else "server")
        per_broker[name] = {"role": role, "cores": cores, "threads": threads}
    machine = (b.busy - a.busy) / max(1.0, b.total - a.total) * ncpu
    driver = (b.self_s - a.self_s) / wall
    pg_cores = (b.pg - a.pg) / wall if with_pg else 0.0
    return {
        "wall_s": wall,
        "machine_busy_cores": machine,
        "driver_cores": driver,  # this process: the generators' threads + Python polling
        "servers_cores": total_servers,
        "postgres_cores": pg_cores,
        "other_cores": machine - driver - total_servers - pg_cores,
        "brokers": per_broker,
    }


# --------------------------------------------------------------------------- load


def gen_options(conns: int) -> Options:
    return Options(transport="http", connections=conns, window=1, threads=1, progress=False)


def run_gens(
    urls: list[str], plans: list[Plan], opts: Options, limit_s: float
) -> list[dict[str, Any]]:
    """One load generator per URL, all started together; their reports (bounded)."""
    gens = [LoadGen(json.dumps(config(u, p, opts))) for u, p in zip(urls, plans, strict=True)]
    _gens.extend(gens)
    deadline = time.monotonic() + limit_s
    try:
        while not all(g.finished() for g in gens):
            if time.monotonic() > deadline:
                for g in gens:
                    g.stop()
                break
            time.sleep(0.05)
        return [json.loads(g.join()) for g in gens]
    finally:
        for g in gens:
            _gens.remove(g)


def plan(scenario: str, queue: str, args: argparse.Namespace, **kw: Any) -> Plan:
    return Plan(
        scenario=scenario,
        queues=[queue],
        workers=1,
        warmup_s=kw.get("warmup_s", args.warmup),
        duration_s=kw.get("duration_s", args.duration),
        count=kw.get("count"),
        rate=None,
        timeout_s=10.0,
        prefill=kw.get("prefill"),
        batch=kw.get("batch", 100),
    )


def prefill(system: System, jobs: int, args: argparse.Namespace) -> Sample:
    """Bulk pushes (100 jobs each) of `jobs` jobs onto each generator's queue, untimed."""
    reqs = max(1, math.ceil(jobs / 100))
    urls = [b.url for b in system.brokers]
    if system.kind == "hopper_cluster_owner_only":
        urls = [b.url for b in system.brokers if b.name == system.owner]
    if len(urls) == 1:
        urls = urls * BROKERS
    plans = [
        plan("bulk", system.queues[i], args, warmup_s=0.0, duration_s=None, count=reqs)
        for i in range(BROKERS)
    ]
    t0 = time.monotonic()
    reports = run_gens(urls, plans, gen_options(4), args.prefill_timeout)
    done = sum(int(r["series"][0]["ok"]) for r in reports) * 100
    errors = sum(int(r["series"][0]["errors"]) for r in reports)
    return {
        "jobs_per_queue": reqs * 100,
        "pushed": done,
        "errors": errors,
        "seconds": time.monotonic() - t0,
    }


def measure_cell(
    kind: str,
    cell: str,
    pg: PG.Postgres,
    tag: str,
    scratch: Path,
    args: argparse.Namespace,
    prefill_jobs: int,
) -> Sample:
    busy_before = wait_idle(args.idle_wait, args.idle_below) if args.idle_wait > 0 else None
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    res: Sample = {"busy_cores_before": busy_before, "loadavg_before": loadavg}
    try:
        system = start_system(kind, pg, tag, scratch, args.fsync, args.slots)
    except Exception as e:
        stop_all_servers()
        return {**res, "rate": None, "error": f"start: {type(e).__name__}: {str(e)[-1500:]}"}
    res["server_commands"] = system.commands
    res["owner"] = system.owner
    if system.owners:
        res["slot_owners"] = system.owners
        res["queues"] = system.queues
    with_pg = system.db is not None
    try:
        if cell == "pullack":
            res["prefill"] = prefill(system, prefill_jobs, args)
        urls = [b.url for b in system.brokers]
        if kind == "hopper_cluster_owner_only":
            urls = [b.url for b in system.brokers if b.name == system.owner]
        if len(urls) == 1:
            urls = urls * BROKERS
        scenario = "push" if cell == "push" else "pullack"
        plans = [
            plan(scenario, system.queues[i], args, prefill=0 if cell == "pullack" else None)
            for i in range(BROKERS)
        ]
        k0 = pg_counters(pg, system.db) if system.db else None
        c0 = CpuSnap.take(system, pg if with_pg else None)
        reports = run_gens(urls, plans, gen_options(args.conns), args.warmup + args.duration + 60)
        c1 = CpuSnap.take(system, pg if with_pg else None)
        k1 = pg_counters(pg, system.db) if system.db else None
        res |= summarize(reports, urls)
        if k0 and k1:
            # over warm-up + measured time: per job of the whole run (warm-up included)
            done = sum(int(r["series"][0]["ok"]) for r in reports)  # warm-up included
            res["postgres"] = {
                "wal_bytes": k1[0] - k0[0],
                "commits_approx": k1[1] - k0[1],
                "jobs_in_window": done,
                "wal_bytes_per_job": (k1[0] - k0[0]) / done if done else None,
                "commits_per_job_approx": (k1[1] - k0[1]) / done if done else None,
            }
        res["cpu"] = cpu_delta(c0, c1, system, with_pg)
        # the load generators' own threads (cpu_s over their run; one core each at most)
        gen_cpu = [r.get("cpu_s") for r in reports]
        gen_wall = max(float(r["wall_s"]) for r in reports)
        res["generator_cores"] = (
            sum(float(c) for c in gen_cpu if c is not None) / gen_wall if gen_wall else None
        )
        if not all(b.srv.running for b in system.brokers):
            res["error"] = "a server exited during the cell"
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {str(e)[-1500:]}"
    finally:
        res["server_exit"] = stop_system(system, pg)
    if res.get("error") or res.get("errors"):
        res["rate"] = None
    return res


def stop_all_servers() -> None:
    for srv in list(_servers):
        srv.kill()
        _servers.remove(srv)


def summarize(reports: list[dict[str, Any]], urls: list[str]) -> Sample:
    per = []
    hist = None
    ok = errors = empty = 0
    longest = 0.0
    notes: list[str] = []
    for url, r in zip(urls, reports, strict=True):
        s = Series.from_report(r["series"][0])
        per.append(
            {
                "url": url,
                "ok": s.ok,
                "rate": s.rate(),
                "elapsed_s": s.elapsed_s,
                "errors": s.errors,
                "error_sample": s.error_sample[:300],
                "empty": s.empty,
                "p50_ms": value_ms(s.hist, 50.0),
                "p99_ms": value_ms(s.hist, 99.0),
                "notes": r["notes"],
            }
        )
        ok += s.ok
        errors += s.errors
        empty += s.empty
        longest = max(longest, s.elapsed_s)
        notes += [f"{url}: {n}" for n in r["notes"]]
        if hist is None:
            hist = s.hist
        else:
            hist.add(s.hist)
    assert hist is not None
    return {
        "rate": ok / longest if longest > 0 else None,
        "rate_sum_of_generators": sum(p["rate"] for p in per),
        "ok": ok,
        "errors": errors,
        "empty_pulls": empty,
        "measured_s": longest,
        "p50_ms": value_ms(hist, 50.0),
        "p99_ms": value_ms(hist, 99.0),
        "per_generator": per,
        "notes": notes,
    }


# --------------------------------------------------------------------------- failover


def try_push(client: httpx.Client, url: str, queue: str, i: int) -> str | None:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        r = client.post(f"{url}/queues/{queue}/jobs", json={"data": {"i": i}}, timeout=1.0)
        if r.status_code == 200:
            return str(r.json()["id"])
    return None


def failover(pg: PG.Postgres, scratch: Path, args: argparse.Namespace, slots: int = 1) -> Sample:
    """--failovers rounds of SIGKILL of the broker owning the most slots; the time is
    until every slot it owned answered a push through a survivor."""
    db = f"cl_failover_{slots}"
    create_db(pg, db)
    names = ["a", "b", "c"]
    brokers = {n: hopper_broker(pg, db, n, scratch, args.fsync, slots=slots) for n in names}
    queues = [
        next(q for q in (f"fo{s}-{i}" for i in range(10_000)) if queue_slot(q, slots) == s)
        for s in range(slots)
    ]
    rounds: list[Sample] = []
    acked: set[str] = set()
    seq = 0
    out: Sample = {"database": db, "fsync": args.fsync, "slots": slots, "lease_ms": "default"}
    try:
        for n in names:
            launch(brokers[n])
        with httpx.Client() as client:
            for k in range(args.failovers):
                owners = settle(pg, db, names, slots) if slots > 1 else {0: slot_owner(pg, db)}
                victim = max(names, key=lambda n: list(owners.values()).count(n))
                lost_slots = [s for s, o in owners.items() if o == victim]
                survivors = [n for n in names if n != victim]
                for n in names:  # every broker serves every slot before the kill
                    for q in queues:
                        seq += 1
                        got = try_push(client, brokers[n].url, q, seq)
                        if got is None:
                            raise RuntimeError(f"round {k + 1}: {n} does not serve {q}")
                        acked.add(got)
                time.sleep(0.2)
                killed_at = time.monotonic()
                os.killpg(brokers[victim].pid, signal.SIGKILL)
                served: dict[int, float] = {}
                tries = 0
                deadline = killed_at + args.failover_timeout
                while len(served) < len(lost_slots) and time.monotonic() < deadline:
                    pending = [s for s in lost_slots if s not in served]
                    slot = pending[tries % len(pending)]
                    n = survivors[tries % len(survivors)]
                    tries += 1
                    seq += 1
                    got = try_push(client, brokers[n].url, queues[slot], seq)
                    if got is not None:
                        acked.add(got)
                        served[slot] = time.monotonic() - killed_at
                    else:
                        time.sleep(0.005)
                brokers[victim].kill()  # reap
                done = len(served) == len(lost_slots)
                rounds.append(
                    {
                        "round": k + 1,
                        "killed": victim,
                        "its_slots": lost_slots,
                        "slots_served_s": served,
                        "failover_s": max(served.values()) if done else None,
                        "push_tries": tries,
                    }
                )
                print(
                    f"failover {k + 1}/{args.failovers} ({slots} slots): killed {victim} "
                    f"owning {len(lost_slots)}, all served after "
                    f"{fmt(max(served.values()) * 1000 if done else None, '.0f')} ms",
                    file=sys.stderr,
                    flush=True,
                )
                if not done:
                    break
                brokers[victim].start(timeout=60, retry=True)  # back as a standby
                time.sleep(args.failover_settle)
            # every acknowledged push is handed out again
            seen: set[str] = set()
            url = brokers[names[0]].url
            for q in queues:
                for _ in range(len(acked) + 100):
                    r = client.get(f"{url}/queues/{q}/jobs", timeout=10).json()
                    if r.get("job") is None:
                        break
                    seen.add(str(r["job"]["id"]))
            out["acknowledged_pushes"] = len(acked)
            out["drained"] = len(seen)
            out["lost"] = len(acked - seen)
    finally:
        for b in brokers.values():
            b.stop(10.0)
            if b in _servers:
                _servers.remove(b)
        drop_db(pg, db)
    times = [r["failover_s"] for r in rounds if r["failover_s"] is not None]
    out["rounds"] = rounds
    out["kills"] = len(rounds)
    out["failed_rounds"] = len(rounds) - len(times)
    out["median_s"] = statistics.median(times) if times else None
    out["max_s"] = max(times) if times else None
    out["min_s"] = min(times) if times else None
    return out


# --------------------------------------------------------------------------- report


def fmt(x: float | None, spec: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def med(samples: list[Sample], get: Callable[[Sample], Any]) -> float | None:
    vals = []
    for s in samples:
        if s.get("rate") is None:
            continue
        with contextlib.suppress(KeyError, TypeError):
            v = get(s)
            if v is not None:
                vals.append(float(v))
    return statistics.median(vals) if vals else None


def medians(samples: list[Sample]) -> Sample:
    out: Sample = {
        "ok_runs": sum(1 for s in samples if s.get("rate") is not None),
        "failed_runs": sum(1 for s in samples if s.get("rate") is None),
    }
    for key, get in (
        ("rate", lambda s: s["rate"]),
        ("p50_ms", lambda s: s["p50_ms"]),
        ("p99_ms", lambda s: s["p99_ms"]),
        ("generator_cores", lambda s: s["generator_cores"]),
        ("driver_cores", lambda s: s["cpu"]["driver_cores"]),
        ("servers_cores", lambda s: s["cpu"]["servers_cores"]),
        ("postgres_cores", lambda s: s["cpu"]["postgres_cores"]),
        ("machine_busy_cores", lambda s: s["cpu"]["machine_busy_cores"]),
        ("other_cores", lambda s: s["cpu"]["other_cores"]),
    ):
        out[key] = med(samples, get)
    return out


def report(med_: dict[str, dict[str, Sample]], fos: list[Sample], args: argparse.Namespace) -> None:
    print(
        f"\nHTTP, {BROKERS} generators x {args.conns} connections, {args.duration:g} s after "
        f"{args.warmup:g} s warm-up, fsync {args.fsync}; median of {args.runs} run(s), jobs/s\n"
    )
    print(
        "| cell | hopper 3 brokers | bunqueue 3 brokers | hopper / bunqueue "
        "| hopper single (WAL) | cluster / single | cluster, all on the owner "
        f"| hopper 3 brokers, {args.slots} slots | slots / bunqueue | slots / single |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell in CELLS:
        if cell not in med_:
            continue
        h, b, s, o, sl = (med_[cell].get(k, {}).get("rate") for k in SYSTEMS)
        r1 = h / b if h and b else None
        r2 = h / s if h and s else None
        r3 = sl / b if sl and b else None
        r4 = sl / s if sl and s else None
        print(
            f"| {cell} | {fmt(h)} | {fmt(b)} | {fmt(r1, '.1f')} "
            f"| {fmt(s)} | {fmt(r2, '.2f')} | {fmt(o)} "
            f"| {fmt(sl)} | {fmt(r3, '.1f')} | {fmt(r4, '.2f')} |"
        )
    print("\n| cell | system | servers cores | postgres cores | generator cores | machine |")
    print("|---|---|---:|---:|---:|---:|")
    for cell in CELLS:
        for k in SYSTEMS if cell in med_ else ():
            m = med_[cell].get(k)
            if m is None:
                continue
            print(
                f"| {cell} | {k} | {fmt(m['servers_cores'], '.2f')} "
                f"| {fmt(m['postgres_cores'], '.2f')} | {fmt(m['generator_cores'], '.2f')} "
                f"| {fmt(m['machine_busy_cores'], '.2f')} |"
            )
    for fo in fos:
        print(
            f"\nfailover, {fo['slots']} slot(s), over {fo['kills']} kills of the broker owning "
            f"the most slots: median {fmt(fo['median_s'], '.3f')} s, "
            f"max {fmt(fo['max_s'], '.3f')} s ({fo['failed_rounds']} failed); "
            f"{fo.get('lost')} of {fo.get('acknowledged_pushes')} acknowledged pushes lost"
        )


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--conns", type=int, default=32, help="HTTP connections per generator")
    p.add_argument("--fsync", default="always", choices=("always", "interval"))
    p.add_argument("--parts", default="throughput,failover", help="throughput,failover")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--slots", type=int, default=6, help="slots of the hopper_cluster_slots system")
    p.add_argument("--failovers", type=int, default=20)
    p.add_argument("--failover-timeout", type=float, default=30.0)
    p.add_argument(
        "--failover-settle",
        type=float,
        default=1.0,
        help="seconds after the restarted broker is up before the next kill",
    )
    p.add_argument("--prefill-timeout", type=float, default=240.0)
    p.add_argument(
        "--bunqueue-prefill-cap",
        type=int,
        default=30_000,
        help="jobs per queue at most (bunqueue loads every live job at start "
        "and caps its read model at 100k)",
    )
    add_quiet_options(p, idle_wait=60.0, noisy_retries=1)
    p.add_argument("--out", type=Path, default=S.HERE / "results" / "cluster.json")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    systems = [k for k in args.systems.split(",") if k]
    cells = [c for c in args.cells.split(",") if c]

    def on_signal(signum: int, _frame: object) -> None:
        stop_all()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    atexit.register(stop_all)

    info: Sample = S.machine_info()
    info["postgres"] = subprocess.run(
        [str(PG.bin_dir() / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hopper-bench-cluster-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.time()
    pg = PG.start()
    _pg.append(pg)
    samples: dict[str, dict[str, list[Sample]]] = {c: {k: [] for k in systems} for c in cells}
    discarded: dict[str, dict[str, list[Sample]]] = {c: {k: [] for k in systems} for c in cells}
    fos: list[Sample] = []
    try:
        if "throughput" in parts:
            for run in range(args.runs):
                order = systems[run % len(systems) :] + systems[: run % len(systems)]
                push_rate: dict[str, float] = {}
                for cell in cells:
                    for kind in order:
                        jobs = prefill_size(kind, push_rate.get(kind), args)
                        for attempt in range(1, args.noisy_retries + 2):
                            tag = f"r{run + 1}_{cell}_{kind}_{attempt}"
                            res = measure_cell(kind, cell, pg, tag, scratch, args, jobs)
                            res["run"], res["attempt"] = run + 1, attempt
                            other = res.get("cpu", {}).get("other_cores")
                            noisy = other is not None and other > args.noisy_above
                            last = attempt > args.noisy_retries
                            print_sample(res, cell, kind, args.runs, noisy and not last)
                            if not noisy or last:
                                res["noisy"] = noisy
                                samples[cell][kind].append(res)
                                break
                            discarded[cell][kind].append(res)
                        if cell == "push" and res.get("rate"):
                            push_rate[kind] = float(res["rate"])
        if "failover" in parts and args.failovers > 0:
            wait_idle(args.idle_wait, args.idle_below)
            for slots in sorted({1, args.slots}):
                wait_idle(args.idle_wait, args.idle_below)
                fos.append(failover(pg, scratch, args, slots))
    finally:
        stop_all()
    med_ = {c: {k: medians(samples[c][k]) for k in systems} for c in cells}
    for c in cells:
        m = med_[c]
        h, b, s, o, sl = (m.get(k, {}).get("rate") for k in SYSTEMS)
        m["ratio_hopper_cluster_slots_over_bunqueue_cluster"] = {
            "rate": sl / b if sl and b else None
        }
        m["ratio_hopper_cluster_slots_over_hopper_single"] = {"rate": sl / s if sl and s else None}
        m["ratio_hopper_cluster_over_owner_only"] = {"rate": h / o if h and o else None}
        m["ratio_hopper_cluster_over_bunqueue_cluster"] = {"rate": h / b if h and b else None}
        m["ratio_hopper_cluster_over_hopper_single"] = {"rate": h / s if h and s else None}
    report(med_, fos, args)
    write_json(args, samples, discarded, med_, fos, info, scratch, started)
    return 0


def prefill_size(kind: str, push_rate: float | None, args: argparse.Namespace) -> int:
    """Jobs per queue for a pull+ack cell: 1.5 x what this system's push cell of the same
    run did per generator over the warm-up and the measured time (pull+ack is slower than
    push, so the queues outlast the run)."""
    per_gen = (push_rate or 20_000.0) / BROKERS
    jobs = int(1.5 * per_gen * (args.warmup + args.duration)) + 1000
    if kind == "bunqueue_cluster":
        jobs = min(jobs, args.bunqueue_prefill_cap)
    return jobs


def print_sample(res: Sample, cell: str, kind: str, runs: int, retry: bool) -> None:
    cpu = res.get("cpu", {})
    print(
        f"run {res['run']}/{runs} {cell:<8} {kind:<17} {fmt(res.get('rate')):>8} jobs/s "
        f"servers {fmt(cpu.get('servers_cores'), '.2f')} "
        f"pg {fmt(cpu.get('postgres_cores'), '.2f')} "
        f"gen {fmt(res.get('generator_cores'), '.2f')} other {fmt(cpu.get('other_cores'), '.2f')}"
        + ("  (other work on the machine: measuring again)" if retry else "")
        + (f"  FAILED {str(res.get('error'))[:300]}" if res.get("error") else "")
        + (
            f"  {res['errors']} errors: {res['per_generator'][0]['error_sample'][:200]}"
            if res.get("errors")
            else ""
        ),
        file=sys.stderr,
        flush=True,
    )


def write_json(
    args: argparse.Namespace,
    samples: dict[str, dict[str, list[Sample]]],
    discarded: dict[str, dict[str, list[Sample]]],
    med_: dict[str, dict[str, Sample]],
    fos: list[Sample],
    info: Sample,
    scratch: Path,
    started: float,
) -> None:
    body = {
        "method": {
            "runs": args.runs,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "generators": f"{BROKERS} x hopper._engine.LoadGen in the driver process, HTTP/1.1, "
            f"{args.conns} connections each, 1 thread each, one per broker (all three on the "
            "single server's port for hopper_single), queues cl0/cl1/cl2",
            "fsync": f"hopper: HOPPER_FSYNC={args.fsync} (cluster: an answer waits for the "
            "PostgreSQL commit of its log row; single: for fdatasync of the local WAL); "
            "bunqueue: every operation a PostgreSQL transaction; PostgreSQL fsync=on, "
            "synchronous_commit=on (tests/postgres_server.py)",
            "fresh": "each cell: a new database on the one PostgreSQL server, new servers",
            "rate": "jobs measured by all generators / the longest measured window; a sample "
            "with any error is failed (rate null)",
            "pullack_prefill": "untimed bulk pushes (100 jobs a request) of 1.5 x the same "
            "run's push rate per generator x (warm-up + duration) + 1000 jobs per queue "
            f"(bunqueue: at most {args.bunqueue_prefill_cap})",
            "cpu": "cores = CPU s / wall s over the timed phase; per broker per thread "
            "name (/proc/<pid>/task/*/stat); postgres = the postmaster's process tree; "
            "driver = this process (generators + Python); other = machine - the rest",
            "idle": quiet_method(args),
            "failover": "for 1 slot and for --slots slots: each round waits until every slot "
            "is owned by its ranked broker, SIGKILLs the process group of the broker owning "
            "the most slots (hopper_slots), then pushes through the survivors alternately "
            "(1 s timeout each) to a queue of each slot it owned until each answered 200: "
            "failover_s is kill -> the last of those answers; the killed broker is "
            f"restarted, {args.failover_settle:g} s settle, next round",
        },
        "server_logs": str(scratch),
        "samples": samples,
        "discarded_noisy_samples": discarded,
        "median": med_,
        "failover": fos,
    }
    S.write_results(args.out, started, info, body)


if __name__ == "__main__":
    sys.exit(main())
