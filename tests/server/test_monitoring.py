"""Monitoring and debug endpoints: /health, /healthz, /live, /ready, /stats, /metrics,
/prometheus, POST /gc, GET /heapstats."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Server, ServerFactory, expect_ok, pull, push, wait_until
from websockets.sync.client import connect as ws_connect

MEMORY_KEYS = {"heapUsed", "heapTotal", "rss"}
COLLECTION_KEYS = {
    "jobIndex",
    "completedJobs",
    "processingTotal",
    "queuedTotal",
    "temporalIndexTotal",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_memory(memory: dict[str, Any], extra: frozenset[str] = frozenset()) -> None:
    assert set(memory) == MEMORY_KEYS | extra, memory
    for key, value in memory.items():
        assert _is_int(value) and value >= 0, (key, value)
    assert 0 < memory["rss"] < 64 * 1024, memory  # MB, not bytes


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _make_known_state(client: httpx.Client) -> None:
    """waiting 3, active 1, delayed 1, completed 1, dlq 1; pushed 7, pulled 3."""
    push(client, "mon-a")
    push(client, "mon-a")
    pull(client, "mon-a")  # one active, one waiting
    push(client, "mon-w")
    push(client, "mon-w")
    push(client, "mon-delayed", delay=600_000)
    done = push(client, "mon-done")
    pull(client, "mon-done")
    expect_ok(client.post(f"/jobs/{done}/ack", json={"result": 1}))
    dead = push(client, "mon-dead", maxAttempts=1)
    pull(client, "mon-dead")
    expect_ok(client.post(f"/jobs/{dead}/fail", json={"error": "boom"}))


def test_counts_match_pushes_everywhere(start_server: ServerFactory) -> None:
    client = start_server().client
    _make_known_state(client)

    health = expect_ok(client.get("/health"))
    assert health["queues"] == {
        "waiting": 3,
        "active": 1,
        "delayed": 1,
        "completed": 1,
        "dlq": 1,
    }

    body = expect_ok(client.get("/stats"))
    stats = body["stats"]
    assert stats["queued"] == 3
    assert stats["processing"] == 1
    assert stats["delayed"] == 1
    assert stats["dlq"] == 1
    assert stats["completed"] == 1
    assert stats["totalPushed"] == 7
    assert stats["totalPulled"] == 3
    assert stats["totalCompleted"] == 1
    assert stats["totalFailed"] == 1
    collections = body["collections"]
    assert collections["completedJobs"] == 1
    assert collections["processingTotal"] == 1
    assert collections["queuedTotal"] == 3
    assert collections["temporalIndexTotal"] == 1
    assert collections["jobIndex"] == 7

    assert client.get("/metrics").json() == {
        "ok": True,
        "metrics": {"totalPushed": 7, "totalPulled": 3, "totalCompleted": 1, "totalFailed": 1},
    }

    samples = _samples(client.get("/prometheus").text)
    assert samples[("bunqueue_jobs_pushed_total", ())] == 7
    assert samples[("bunqueue_jobs_pulled_total", ())] == 3
    assert samples[("bunqueue_jobs_completed_total", ())] == 1
    assert samples[("bunqueue_jobs_failed_total", ())] == 1
    per_queue = {
        ("waiting", "mon-a"): 1,
        ("active", "mon-a"): 1,
        ("waiting", "mon-w"): 2,
        ("active", "mon-w"): 0,
        ("delayed", "mon-delayed"): 1,
        ("dlq", "mon-dead"): 1,
        ("dlq", "mon-done"): 0,
    }
    for (metric, queue), want in per_queue.items():
        key = (f"bunqueue_queue_jobs_{metric}", (("queue", queue),))
        assert samples[key] == want, key
    # Latency histograms: one push observation per push, one pull per pull, one ack.
    assert samples[("bunqueue_push_duration_ms_count", ())] == 7
    assert samples[("bunqueue_pull_duration_ms_count", ())] == 3
    assert samples[("bunqueue_ack_duration_ms_count", ())] == 1
    assert samples[("bunqueue_push_duration_ms_bucket", (("le", "+Inf"),))] == 7


# ----- /health -----------------------------------------------------------------------------


@pytest.mark.smoke
def test_health_fields_and_types(client: httpx.Client) -> None:
    resp = client.get("/health")
    assert resp.headers["content-type"].startswith("application/json")
    body = expect_ok(resp)
    assert set(body) == {"ok", "status", "uptime", "version", "queues", "connections", "memory"}
    assert body["status"] == "healthy"
    assert _is_int(body["uptime"]) and 0 <= body["uptime"] < 3600
    assert isinstance(body["version"], str) and body["version"]
    assert set(body["queues"]) == {"waiting", "active", "delayed", "completed", "dlq"}
    assert all(_is_int(v) and v >= 0 for v in body["queues"].values())
    assert set(body["connections"]) == {"tcp", "ws", "sse"}
    assert all(_is_int(v) and v >= 0 for v in body["connections"].values())
    _check_memory(body["memory"])


def _connections(client: httpx.Client) -> dict[str, int]:
    return expect_ok(client.get("/health"))["connections"]  # type: ignore[no-any-return]


@pytest.fixture
def fresh(start_server: ServerFactory) -> Server:
    return start_server()


def test_health_counts_sse_connections(fresh: Server) -> None:
    client = fresh.client
    assert _connections(client)["sse"] == 0
    with (
        httpx.Client(base_url=fresh.url, timeout=10) as a,
        httpx.Client(base_url=fresh.url, timeout=10) as b,
        a.stream("GET", "/events") as s1,
        b.stream("GET", "/events/queues/x") as s2,
    ):
        # Keep the line iterators: dropping one closes its connection.
        lines = [stream.iter_lines() for stream in (s1, s2)]
        for it in lines:
            assert next(it) == "retry: 3000"
            assert next(it).startswith("data: ")
        assert _connections(client) == {"tcp": 0, "ws": 0, "sse": 2}
    assert wait_until(lambda: _connections(client)["sse"] == 0)


def test_health_counts_ws_connections(fresh: Server) -> None:
    client = fresh.client
    with ws_connect(fresh.ws_url + "/ws", open_timeout=5) as w1:
        with ws_connect(fresh.ws_url + "/ws/queues/x", open_timeout=5) as w2:
            for w in (w1, w2):  # a command round trip proves the socket is open
                w.send('{"cmd":"PULL","queue":"x","reqId":"r"}')
                assert '"reqId":"r"' in str(w.recv(timeout=5))
            assert _connections(client) == {"tcp": 0, "ws": 2, "sse": 0}
        assert wait_until(lambda: _connections(client)["ws"] == 1)
    assert wait_until(lambda: _connections(client)["ws"] == 0)


# ----- probes ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/live"])
def test_liveness(client: httpx.Client, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.text == "OK"
    assert resp.headers["content-type"].startswith("text/plain")


def test_ready(client: httpx.Client) -> None:
    resp = client.get("/ready")
    assert resp.status_code == 200
    assert resp.json() == {"ok": True, "ready": True}


@pytest.mark.parametrize("path", ["/health", "/healthz", "/live", "/ready"])
def test_probes_answer_get_and_head_only(client: httpx.Client, path: str) -> None:
    """HEAD is the GET without its body; other methods are a 405 (bunqueue 2.9.5 answers
    every method on these paths, docs/compatibility.md)."""
    get = client.get(path)
    head = client.head(path)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["access-control-allow-origin"] == "*"
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        resp = client.request(method, path)
        assert resp.status_code == 405, method
        assert resp.headers["allow"] == "GET, HEAD, OPTIONS"


# ----- /stats, /metrics ----------------------------------------------------------------------


def test_stats_fields(client: httpx.Client) -> None:
    body = expect_ok(client.get("/stats"))
    assert {"ok", "stats", "memory", "collections"} <= set(body)
    page_stats = {
        "queued",
        "processing",
        "delayed",
        "dlq",
        "completed",
        "uptime",
        "pushPerSec",
        "pullPerSec",
        "totalPushed",
        "totalPulled",
        "totalCompleted",
        "totalFailed",
    }
    assert page_stats <= set(body["stats"]), page_stats - set(body["stats"])
    for key in page_stats:
        value = body["stats"][key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert value >= 0, key
    # The page's keys and hopper's `waitingChildren`; not bunqueue 2.9.5's `waiting`,
    # `active`, `prioritized` (docs/compatibility.md).
    assert set(body["stats"]) == page_stats | {"waitingChildren"}
    # Units: uptime in seconds (as /health's); memory in whole MB (_check_memory).
    assert abs(body["stats"]["uptime"] - expect_ok(client.get("/health"))["uptime"]) <= 1
    _check_memory(body["memory"], frozenset({"external", "arrayBuffers"}))
    assert set(body["collections"]) >= COLLECTION_KEYS
    assert all(_is_int(body["collections"][k]) for k in COLLECTION_KEYS)


def test_stats_push_rate_follows_traffic(client: httpx.Client, queue: str) -> None:
    before = expect_ok(client.get("/stats"))["stats"]
    client.post(f"/queues/{queue}/jobs/bulk", json={"jobs": [{"data": i} for i in range(500)]})
    after = expect_ok(client.get("/stats"))["stats"]
    assert after["totalPushed"] - before["totalPushed"] == 500
    # The rate is sampled by the server; within a few seconds it must show the burst.
    rate = wait_until(lambda: expect_ok(client.get("/stats"))["stats"]["pushPerSec"] > 0, timeout=4)
    assert rate


def test_metrics_shape(client: httpx.Client, queue: str) -> None:
    before = expect_ok(client.get("/metrics"))
    assert set(before) == {"ok", "metrics"}
    keys = {"totalPushed", "totalPulled", "totalCompleted", "totalFailed"}
    assert set(before["metrics"]) == keys
    assert all(_is_int(v) for v in before["metrics"].values())
    job_id = push(client, queue)
    pull(client, queue)
    expect_ok(client.post(f"/jobs/{job_id}/ack"))
    after = expect_ok(client.get("/metrics"))["metrics"]
    for key in ("totalPushed", "totalPulled", "totalCompleted"):
        assert after[key] == before["metrics"][key] + 1, key
    assert after["totalFailed"] == before["metrics"]["totalFailed"]


# ----- /prometheus -------------------------------------------------------------------------


def test_prometheus_format(client: httpx.Client, queue: str) -> None:
    push(client, queue)
    resp = client.get("/prometheus")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = resp.text
    # (The parser names a counter family without `_total`, so `bunqueue_jobs_completed`
    # the gauge and `bunqueue_jobs_completed_total` the counter share a key: keep counters.)
    families: dict[str, Any] = {}
    for f in text_string_to_metric_families(text):
        if f.name not in families or f.type == "counter":
            families[f.name] = f
    for name in ("pushed", "pulled", "completed", "failed"):
        family = families[f"bunqueue_jobs_{name}"]
        assert family.type == "counter", name
        assert f"# HELP bunqueue_jobs_{name}_total " in text
        assert f"# TYPE bunqueue_jobs_{name}_total counter" in text
    for metric in ("waiting", "active", "delayed", "dlq"):
        family = families[f"bunqueue_queue_jobs_{metric}"]
        assert family.type == "gauge"
        queues = {s.labels["queue"] for s in family.samples}
        assert queue in queues, metric
    for op in ("push", "pull", "ack"):
        family = families[f"bunqueue_{op}_duration_ms"]
        assert family.type == "histogram"
        buckets = [s for s in family.samples if s.name.endswith("_bucket")]
        bounds = [s.labels["le"] for s in buckets]
        assert bounds[-1] == "+Inf"
        assert {0.1, 1.0} <= {float(b) for b in bounds[:-1]}, bounds  # ms, as on the page
        counts = [s.value for s in buckets]
        assert counts == sorted(counts), "buckets are cumulative"
        names = {s.name for s in family.samples}
        assert {f"bunqueue_{op}_duration_ms_sum", f"bunqueue_{op}_duration_ms_count"} <= names
    assert 'bunqueue_push_duration_ms_bucket{le="+Inf"}' in text
    assert "_duration_seconds" not in text  # bunqueue 2.9.5's names; the page's are in ms
    for metric in ("waiting", "active", "delayed", "dlq"):
        assert families[f"bunqueue_jobs_{metric}"].type == "gauge", metric
    assert "# TYPE bunqueue_jobs_completed gauge" in text
    transports = {s.labels["transport"] for s in families["bunqueue_connections"].samples}
    assert transports == {"tcp", "websocket", "sse"}  # bunqueue 2.9.5's labels


def test_prometheus_histogram_counts_pushes(client: httpx.Client, queue: str) -> None:
    def count() -> float:
        samples = _samples(client.get("/prometheus").text)
        return samples[("bunqueue_push_duration_ms_count", ())]

    before = count()
    for _ in range(3):
        push(client, queue)
    assert count() == before + 3


# ----- debug -------------------------------------------------------------------------------


def test_gc(client: httpx.Client) -> None:
    resp = client.post("/gc")
    body = expect_ok(resp)
    assert set(body) == {"ok", "before", "after"}
    _check_memory(body["before"])
    _check_memory(body["after"])


def test_heapstats(client: httpx.Client) -> None:
    body = expect_ok(client.get("/heapstats"))
    assert set(body) == {"ok", "memory", "heap", "collections", "topObjectTypes"}
    _check_memory(body["memory"])
    assert set(body["heap"]) == {"objectCount", "protectedCount", "globalCount"}
    assert all(_is_int(v) and v >= 0 for v in body["heap"].values())
    assert body["heap"]["objectCount"] > 0
    assert set(body["collections"]) >= COLLECTION_KEYS
    top = body["topObjectTypes"]
    assert len(top) == 20
    for entry in top:
        assert set(entry) == {"type", "count"}
        assert isinstance(entry["type"], str) and entry["type"]
        assert _is_int(entry["count"]) and entry["count"] > 0
    counts = [e["count"] for e in top]
    assert counts == sorted(counts, reverse=True)
    assert len({e["type"] for e in top}) == 20


def test_monitoring_under_concurrent_traffic(server: Server, queue: str) -> None:
    """Probes keep answering while other clients push and pull."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=10) as c:
                for _ in range(100):
                    if stop.is_set():
                        return
                    push(c, queue)
                    got = c.get(f"/queues/{queue}/jobs").json()
                    if got["job"] is not None:
                        c.post(f"/jobs/{got['job']['id']}/ack", json={"token": got["token"]})
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for path in ("/health", "/stats", "/metrics", "/prometheus", "/ready") * 5:
            assert server.client.get(path).status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
