"""`hopper soak`: a short bounded run against a server it starts (every fault kind, all
invariants), and proof that the checks are not vacuous: a fake server in between (an
httpx transport that loses a job, delivers an acked job again, or miscounts) makes the
run report the violated invariant."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from hopper.soak import runner
from hopper.soak.config import FAULT_KINDS, SoakConfig
from hopper.soak.report import Report

RUN_S = 20
MACHINE_QUEUE = re.compile(r"^/queues/(soak-[0-9a-f]+-m\d+-[ab])/jobs$")
ANY_QUEUE = re.compile(r"^/queues/([^/]+)/jobs$")
ACK = re.compile(r"^/jobs/([^/]+)/ack$")
GET = re.compile(r"^/jobs/([^/]+)$")
COUNTS = re.compile(r"^/api/queues/(soak-[0-9a-f]+-m\d+-[ab])$")


def test_short_run_with_every_fault_passes(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOPPER_")}
    cmd = [sys.executable, "-m", "hopper", "soak", "--start", "--fsync", "always"]
    cmd += ["--duration", f"{RUN_S}s", "--json", str(out), "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_S + 60)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result            PASS" in done.stdout
    report = json.loads(out.read_text())
    assert report["result"] == "PASS"
    for kind in FAULT_KINDS:
        assert report["faults"][kind] >= 1, report["faults"]
    for invariant in (
        "no-lost-push",
        "no-double-completion",
        "ids-unique",
        "counts-consistent",
        "state-consistent",
        "stalled-jobs-return",
        "dropped-connection-releases",
        "stats-monotonic",
        "memory-bounded",
    ):
        assert report["checks"].get(invariant, 0) >= 1, (invariant, report["checks"])
    assert report["steps"] > 0 and report["load"]["acked"] > 0
    assert report["elapsed_s"] < RUN_S + 40


class Mutator(httpx.BaseTransport):
    """The real server behind a transport that breaks one promise (`mode`):

    - lose: the first job the state machine pushes over HTTP is then answered 404;
    - redeliver: a job acked over HTTP is handed out again by the next HTTP pull of
      its queue;
    - miscount: a state machine queue's management counts show one waiting job more.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.inner = httpx.HTTPTransport()
        self.lock = threading.Lock()
        self.pulled: dict[str, tuple[str, bytes]] = {}  # job id → (queue, pull answer)
        self.lost: str | None = None
        self.replay: tuple[str, bytes] | None = None
        self.injected = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        with self.lock:
            faked = self._fake(method, path)
        if faked is not None:
            self.injected += 1
            return faked
        resp = self.inner.handle_request(request)
        if resp.status_code != 200:
            return resp
        try:
            body = resp.read()
        finally:
            resp.close()  # hands the connection back to the pool now, not at collection
        with self.lock:
            body = self._observe(method, path, body)
        return httpx.Response(200, headers={"content-type": "application/json"}, content=body)

    def _fake(self, method: str, path: str) -> httpx.Response | None:
        if method != "GET":
            return None
        got = GET.match(path)
        if self.mode == "lose" and got and got.group(1) == self.lost:
            return httpx.Response(404, json={"ok": False, "error": "Job not found"})
        pull = ANY_QUEUE.match(path)
        if self.mode == "redeliver" and pull and self.replay and self.replay[0] == pull.group(1):
            body, self.replay = self.replay[1], None
            return httpx.Response(200, content=body)
        return None

    def _observe(self, method: str, path: str, body: bytes) -> bytes:
        if self.mode == "lose" and method == "POST" and self.lost is None:
            if MACHINE_QUEUE.match(path):
                self.lost = json.loads(body)["id"]
        elif self.mode == "redeliver" and method == "GET" and (pull := ANY_QUEUE.match(path)):
            job = json.loads(body).get("job")
            if job is not None:
                self.pulled[job["id"]] = (pull.group(1), body)
        elif self.mode == "redeliver" and method == "POST" and (ack := ACK.match(path)):
            if self.replay is None and not self.injected and ack.group(1) in self.pulled:
                self.replay = self.pulled[ack.group(1)]
        elif self.mode == "miscount" and method == "GET" and COUNTS.match(path):
            doc = json.loads(body)
            doc["data"]["counts"]["waiting"] += 1
            self.injected += 1
            return json.dumps(doc).encode()
        return body

    def close(self) -> None:
        """Every client of the soak shares this transport: one of them closing (a load
        thread that ends) must not close the connections the others are reading from
        (that was a `ReadError: [Errno 9] Bad file descriptor` in 3 runs of 10). The
        test closes the pool once the run is over."""

    def close_pool(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(
    ("mode", "invariant"),
    [
        ("lose", "no-lost-push"),
        ("redeliver", "no-double-completion"),
        ("miscount", "counts-consistent"),
    ],
)
def test_a_broken_promise_is_reported(tmp_path: Path, mode: str, invariant: str) -> None:
    config = SoakConfig(
        duration_s=15,
        start=True,
        fsync="always",
        faults=("worker-dies",),
        rate=20.0,
        data_dir=tmp_path / "data",
        server_log=tmp_path / "server.log",
    )
    fake = Mutator(mode)
    try:
        report: Report = runner.run(config, transport=fake)
    finally:
        fake.close_pool()
    print(report.text())
    assert fake.injected >= 1, "the fake server never broke its promise"
    assert report.result == "FAIL", report.text()
    assert report.exit_code == 1
    assert report.violation is not None and report.violation["invariant"] == invariant
    assert f"VIOLATION         {invariant}:" in report.text()
    assert report.elapsed_s < 30
