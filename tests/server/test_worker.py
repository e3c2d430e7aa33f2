"""hopper.Worker against the real job server (HTTP and WebSocket) and on an embedded
hopper.Engine: concurrency, acks with the handler's result, retries through fail, lease
renewal and progress (embedded), and shutdown that loses no job — including a worker in
a subprocess stopped by SIGTERM in the middle of its jobs."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import hopper
import pytest
from support import Server, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(server: Server) -> Iterator[hopper.Client]:
    with hopper.Client(server.url, timeout=5) as c:
        yield c


def in_thread(worker: hopper.Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def finish(worker: hopper.Worker, thread: threading.Thread, timeout: float = 10) -> None:
    worker.stop()
    thread.join(timeout)
    assert not thread.is_alive(), "worker did not stop"


def states(get: Callable[[str], dict[str, Any] | None], ids: list[str]) -> list[str]:
    return [(get(i) or {}).get("state", "?") for i in ids]


# ----- against the server ----------------------------------------------------------


def test_http_worker_runs_jobs_concurrently(client: hopper.Client, queue: str) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0
    progressed: list[bool] = []

    def handler(job: hopper.ActiveJob) -> dict[str, Any]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        progressed.append(job.progress(50))  # no progress route in seed 001's HTTP API
        time.sleep(0.2)
        with lock:
            running -= 1
        return {"double": job.data * 2}

    ids = client.push_many(queue, [{"data": i} for i in range(8)])
    worker = hopper.Worker(client, queue, handler, concurrency=4, poll_timeout=1)
    thread = in_thread(worker)
    try:
        assert wait_until(lambda: states(client.get, ids) == ["completed"] * 8, timeout=10)
    finally:
        finish(worker, thread)
    assert peak == 4  # four ran at once: concurrency without a timing assertion
    assert [client.get(i)["result"] for i in ids] == [{"double": i * 2} for i in range(8)]
    assert worker.processed == 8 and worker.failed == 0
    assert progressed == [False] * 8


def test_retries_come_from_fail(client: hopper.Client, queue: str) -> None:
    def handler(job: hopper.ActiveJob) -> str:
        if job.data == "always":
            raise RuntimeError("always broken")
        if job.attempts < 2:
            raise ValueError(f"flaky on attempt {job.attempts + 1}")
        return "third time lucky"

    flaky = client.push(queue, "flaky", max_attempts=3, backoff=1)
    broken = client.push(queue, "always", max_attempts=2, backoff=1)
    worker = hopper.Worker(client, queue, handler, concurrency=2, poll_timeout=0.5)
    thread = in_thread(worker)
    try:
        assert wait_until(
            lambda: states(client.get, [flaky, broken]) == ["completed", "failed"], timeout=10
        )
    finally:
        finish(worker, thread)
    done = client.get(flaky)
    assert (done["attempts"], done["result"]) == (2, "third time lucky")
    dead = client.get(broken)
    assert (dead["attempts"], dead["error"]) == (2, "RuntimeError: always broken")
    assert worker.failed == 4 and worker.processed == 1


def test_async_handler_over_websocket(server: Server, queue: str) -> None:
    async def handler(job: hopper.ActiveJob) -> int:
        await asyncio.sleep(0.05)
        return int(job.data) + 1

    async def scenario() -> None:
        async with hopper.AsyncClient(server.url, timeout=5) as c:
            ids = await c.push_many(queue, [{"data": i} for i in range(20)])
            worker = hopper.Worker(c, queue, handler, concurrency=5, transport="ws", poll_timeout=1)
            task = asyncio.create_task(worker.run_async())
            for _ in range(200):
                got = [await c.get(i) for i in ids]
                if all(j["state"] == "completed" for j in got):
                    break
                await asyncio.sleep(0.05)
            worker.stop()
            await asyncio.wait_for(task, 5)
            assert [j["result"] for j in got] == [i + 1 for i in range(20)]

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_websocket_worker_releases_unfinished_jobs(server: Server, queue: str) -> None:
    started = threading.Event()

    async def handler(job: hopper.ActiveJob) -> None:
        started.set()
        await asyncio.sleep(30)

    async def scenario() -> str:
        async with hopper.AsyncClient(server.url, timeout=5) as c:
            job_id = await c.push(queue, 1)
            worker = hopper.Worker(c, queue, handler, transport="ws", grace=0.2)
            task = asyncio.create_task(worker.run_async())
            while not started.is_set():
                await asyncio.sleep(0.01)
            worker.stop()
            await asyncio.wait_for(task, 5)
            assert worker.released == 1
            return job_id

    job_id = asyncio.run(asyncio.wait_for(scenario(), 20))
    # The socket closed: the server put its job back, without using an attempt.
    with hopper.Client(server.url) as c:
        assert wait_until(lambda: c.get(job_id)["state"] == "waiting")
        assert c.get(job_id)["attempts"] == 0


def test_bad_queue_stops_the_worker_with_the_error(client: hopper.Client) -> None:
    worker = hopper.Worker(client, "bad name", lambda job: None, poll_timeout=1)
    with pytest.raises(hopper.InvalidInputError, match="Invalid queue name"):
        worker.run()


WORKER_SCRIPT = """
import sys, time
import hopper

url, queue = sys.argv[1], sys.argv[2]

def handler(job):
    sys.stdout.write(f"start {job.id}\\n")  # one write: print() could interleave threads
    sys.stdout.flush()
    time.sleep(job.data["sleep"])
    return {"slept": job.data["sleep"]}

worker = hopper.Worker(hopper.Client(url), queue, handler, concurrency=3, grace=1.0,
                       poll_timeout=1)
worker.run()
print("exited", worker.processed, worker.released, flush=True)
"""


def _read_lines(proc: subprocess.Popen[bytes], n: int, deadline: float) -> list[str]:
    """The first `n` lines of the child's stdout, read unbuffered (a buffered reader
    could hold a line back from select)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    while data.count(b"\n") < n:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"worker subprocess printed {data!r} only")
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            data += os.read(fd, 4096)
    return data.decode().splitlines()[:n]


def test_sigterm_mid_job_loses_nothing(
    client: hopper.Client, server: Server, queue: str, tmp_path: Path
) -> None:
    """Three jobs running when SIGTERM arrives: the two short ones finish within the
    grace period and are acked, the long one is failed with "interrupted by shutdown"
    (the server will retry it), the three not yet pulled stay waiting. A second worker
    then completes all six."""
    sleeps = [0.4, 0.4, 30, 0.1, 0.1, 0.1]
    ids = client.push_many(
        queue, [{"data": {"sleep": s}, "max_attempts": 3, "backoff": 1} for s in sleeps]
    )
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    proc = subprocess.Popen(
        [sys.executable, str(script), server.url, queue],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 15
        started = {line.split()[1] for line in _read_lines(proc, 3, deadline)}
        assert started == set(ids[:3])
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        raw_out, raw_err = proc.communicate(timeout=10)
        out, err = raw_out.decode(), raw_err.decode()
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert took < 3.0  # grace 1 s: the 30 s job does not hold the exit
    assert "exited 2 1" in out, (out, err)
    assert "releasing 1 unfinished job" in err

    jobs = [client.get(i) for i in ids]
    assert [j["state"] for j in jobs[:2]] == ["completed", "completed"]
    assert jobs[2]["state"] in ("waiting", "delayed")
    assert (jobs[2]["attempts"], jobs[2]["error"]) == (1, "interrupted by shutdown")
    assert [(j["state"], j["attempts"]) for j in jobs[3:]] == [("waiting", 0)] * 3

    def quick(job: hopper.ActiveJob) -> str:
        return "redone"

    worker = hopper.Worker(client, queue, quick, concurrency=3, poll_timeout=0.5)
    thread = in_thread(worker)
    try:
        assert wait_until(lambda: states(client.get, ids) == ["completed"] * 6, timeout=10)
    finally:
        finish(worker, thread)
    assert client.get(ids[2])["result"] == "redone"


# ----- embedded ------------------------------------------------------------------------


def test_embedded_worker_renews_leases_and_reports_progress() -> None:
    """A job running 3x longer than the stall interval is not stalled: the worker
    renews its lease; progress reaches the engine."""
    with hopper.Engine(stall_interval_ms=300) as engine:
        seen: list[int] = []

        def handler(job: hopper.ActiveJob) -> str:
            assert job.progress(40)
            time.sleep(0.5)
            seen.append((engine.get(job.id) or {})["progress"])
            time.sleep(0.5)
            assert job.extend_lease()
            return "long done"

        job_id = engine.push("long", {"n": 1})
        quick = engine.push_many("long", [{"data": i} for i in range(3)])
        worker = hopper.Worker(engine, "long", handler, concurrency=2, poll_timeout=0.5)
        thread = in_thread(worker)
        try:
            assert wait_until(
                lambda: states(engine.get, [job_id, *quick]) == ["completed"] * 4, timeout=10
            )
        finally:
            finish(worker, thread)
        job = engine.get(job_id)
        assert job is not None
        assert (job["result"], job["stalls"], job["attempts"]) == ("long done", 0, 0)
        assert seen == [40] * 4


def test_embedded_worker_with_data_dir_releases_on_stop(tmp_path: Path) -> None:
    gate = threading.Event()

    def handler(job: hopper.ActiveJob) -> str:
        if job.data == "stuck":
            gate.wait(10)
        return "ok"

    with hopper.Engine(data_dir=tmp_path / "data") as engine:
        done = engine.push("emb", "quick")
        stuck = engine.push("emb", "stuck")
        worker = hopper.Worker(engine, "emb", handler, concurrency=2, grace=0.2)
        thread = in_thread(worker)
        try:
            assert wait_until(lambda: states(engine.get, [done, stuck]) == ["completed", "active"])
        finally:
            finish(worker, thread)
        gate.set()
        # Back to waiting through the worker's owner id: no attempt used.
        job = engine.get(stuck)
        assert job is not None and (job["state"], job["attempts"]) == ("waiting", 0)
        assert worker.released == 1

        async def async_handler(job: hopper.ActiveJob) -> str:
            return f"async {job.data}"

        worker = hopper.Worker(engine, "emb", async_handler, poll_timeout=0.2)
        thread = in_thread(worker)
        try:
            assert wait_until(lambda: (engine.get(stuck) or {}).get("state") == "completed")
        finally:
            finish(worker, thread)
        assert (engine.get(stuck) or {})["result"] == "async stuck"


# ----- handler failures: logged, typed, with a short stack ---------------------------


def _lookup(data: dict[str, Any]) -> Any:
    return data["x"]  # KeyError('x'): str() of it is just "'x'"


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_a_failing_handler_is_logged_and_sends_its_type_and_stack(
    client: hopper.Client,
    queue: str,
    transport: Literal["http", "ws"],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job's error is `Type: message`, the fail call carries the stack (up to 10
    lines, the innermost frame last), and the worker's logger records the traceback."""
    sent: list[dict[str, Any]] = []
    channel_cls = hopper.WsChannel if transport == "ws" else hopper.AsyncClient
    original = channel_cls.fail

    async def recording(self: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(dict(inspect.signature(original).bind(self, *args, **kwargs).arguments))
        await original(self, *args, **kwargs)

    monkeypatch.setattr(channel_cls, "fail", recording)
    job_id = client.push(queue, {}, max_attempts=1)
    worker = hopper.Worker(client, queue, lambda job: _lookup(job.data), transport=transport)
    with caplog.at_level(logging.WARNING, logger="hopper.worker"):
        thread = in_thread(worker)
        try:
            assert wait_until(lambda: client.get(job_id)["state"] == "failed", timeout=10)
        finally:
            finish(worker, thread)
    assert client.get(job_id)["error"] == "KeyError: 'x'"
    [call] = sent
    stack = call.get("stack")
    assert isinstance(stack, list) and 1 <= len(stack) <= 10
    assert all(isinstance(line, str) for line in stack)
    assert "_lookup" in stack[-1]  # where it was raised
    [record] = [r for r in caplog.records if r.name == "hopper.worker" and r.exc_info]
    assert job_id in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "_lookup" in caplog.text  # the traceback is in the log


def test_an_exception_without_a_message_sends_its_type(client: hopper.Client, queue: str) -> None:
    def handler(job: hopper.ActiveJob) -> None:
        raise TimeoutError

    job_id = client.push(queue, 1, max_attempts=1)
    worker = hopper.Worker(client, queue, handler, handle_signals=False)
    thread = in_thread(worker)
    try:
        assert wait_until(lambda: client.get(job_id)["state"] == "failed", timeout=10)
    finally:
        finish(worker, thread)
    assert client.get(job_id)["error"] == "TimeoutError"
