"""`GET /openapi.json`: a valid OpenAPI 3.1 document (openapi-spec-validator) of both APIs,
generated from the route tables the server dispatches with; real responses conform to it
(status code and body schema), and a short bounded schemathesis run against the live
server finds no 5xx and no response outside the document."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from management_support import ack, api_data, fail, seed_states, take
from support import Server, ServerFactory, push
from tcp_client import Conn

JSON = "application/json"
SSE = "text/event-stream"
FUZZ_BUDGET_S = 60.0


@pytest.fixture(scope="module")
def in_process() -> Iterator[Any]:
    """The app built in this process, on an in-memory engine: its route tables."""
    from hopper.server.app import HopperApp
    from hopper.server.config import ServerConfig

    app = HopperApp(ServerConfig(memory=True))
    try:
        yield app
    finally:
        app.engine.close()


def document(server: Server) -> dict[str, Any]:
    resp = server.client.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(JSON)
    return resp.json()  # type: ignore[no-any-return]


def template(prefix: str, segments: tuple[str, ...]) -> str:
    return prefix + "/" + "/".join(f"{{{s[1:]}}}" if s.startswith(":") else s for s in segments)


# ----- the document ---------------------------------------------------------------------


def test_document_is_valid_openapi_3_1(server: Server) -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator, validate

    doc = document(server)
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_document_covers_every_route_of_both_apis(server: Server, in_process: Any) -> None:
    from hopper.server import openapi

    doc = document(server)
    expected = set()
    for route in in_process.job_api.router.routes():
        if route.method == "WS":
            continue  # WebSocket commands are documented in prose (docs/compatibility.md)
        assert route.doc is not None, f"undocumented route {route.method} {route.path}"
        expected.add((route.method.lower(), template("", route.template)))
    management = in_process.management.routes()
    assert management, "the management API has no routes"
    for route in management:
        assert route.doc is not None, f"undocumented route {route.method} {route.path}"
        expected.add((route.method.lower(), template("/api", route.template)))
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == expected
    # one source of truth: the served document is the one built from the route tables
    assert doc == openapi.build(in_process.job_api.router, in_process.management)


def test_operations_declare_their_errors(server: Server, in_process: Any) -> None:
    doc = document(server)
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    exempt = {("get", "/api/config")}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert any(s.startswith("2") for s in responses), (method, path)
            secured = bool(op["security"])
            if secured:
                assert "401" in responses, (method, path)
            if not path.startswith("/api/"):
                continue
            assert secured == ((method, path) not in exempt), (method, path)
            if method in ("post", "patch", "delete", "put"):
                assert "403" in responses, (method, path)  # read-only mode
            if "{name}" in path:
                assert "404" in responses, (method, path)  # hidden or unknown queue
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    schema = response["content"][JSON]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ApiError"}, (method, path)


# ----- real responses against the document ------------------------------------------------


class Conformance:
    """Checks a response against the document: its status is declared for the operation,
    and a JSON body validates against the declared schema (JSON Schema 2020-12, formats
    checked)."""

    def __init__(self, doc: dict[str, Any], prefix: str = "") -> None:
        from jsonschema import Draft202012Validator

        self.doc = doc
        self.prefix = prefix
        self.validator_class = Draft202012Validator
        self.checked: set[tuple[str, str, str]] = set()
        self.problems: list[str] = []

    def check(self, method: str, path: str, resp: httpx.Response) -> None:
        op = self.doc["paths"][path][method.lower()]
        status = str(resp.status_code)
        label = f"{method} {path} -> {status}"
        self.checked.add((method.lower(), path, status))
        if status not in op["responses"]:
            self.problems.append(f"{label}: status not declared ({resp.text[:200]})")
            return
        content = op["responses"][status]["content"]
        media = resp.headers.get("content-type", "").split(";")[0].strip()
        if media not in content:
            self.problems.append(f"{label}: content type {media!r} not declared ({list(content)})")
            return
        if media != JSON or method == "HEAD":
            return  # a HEAD answer has the GET's headers and no body
        schema = {**content[media]["schema"], "components": self.doc["components"]}
        validator = self.validator_class(schema, format_checker=self.validator_class.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(resp.json()), key=lambda e: list(e.path))
        for error in errors[:3]:
            where = "/".join(map(str, error.absolute_path))
            self.problems.append(f"{label}: at /{where}: {error.message[:200]}")


def call(
    client: httpx.Client,
    conf: Conformance,
    method: str,
    path: str,
    values: dict[str, str],
    **kw: Any,
) -> httpx.Response:
    url = path.format(**values)
    if method == "GET" and conf.doc["paths"][path]["get"]["responses"].get("200", {}).get(
        "content", {}
    ).get(SSE):
        with client.stream("GET", url, timeout=httpx.Timeout(5.0)) as resp:
            if not resp.headers.get("content-type", "").startswith(SSE):
                resp.read()
            conf.check(method, path, resp)
            return resp
    resp = client.request(method, url, **kw)
    conf.check(method, path, resp)
    return resp


def test_real_responses_conform(start_server: ServerFactory) -> None:
    server = start_server(HOPPER_MAX_BODY_BYTES="4096")
    client = server.client
    doc = document(server)
    conf = Conformance(doc)
    q = "conf"
    ids = seed_states(client, q)
    group = push(client, q, groupId="g1", name="grouped")
    push(client, q, repeat={"every": 3_600_000})
    push(client, "pullq")

    def get(path: str, params: dict[str, str] | None = None, **values: str) -> httpx.Response:
        return call(client, conf, "GET", path, {"name": q, "queue": q, **values}, params=params)

    for path in (
        "/health",
        "/healthz",
        "/live",
        "/ready",
        "/heapstats",
        "/stats",
        "/metrics",
        "/prometheus",
        "/openapi.json",
        "/events",
        "/events/queues/{queue}",
        "/api/queues",
        "/api/queues/{name}",
        "/api/queues/{name}/groups",
        "/api/queues/{name}/failures",
        "/api/flows",
        "/api/metrics/sparklines",
        "/api/metrics/status",
        "/api/cluster",
        "/api/config",
        "/api/events",
        "/api/queues/{name}/events",
    ):
        get(path)
    for path in ("/health", "/healthz", "/live", "/ready"):
        call(client, conf, "HEAD", path, {})
    with Conn(server.tcp_port) as c:
        # the extensions' answers with something in them: log lines, limits, a worker,
        # schedulers (a pattern, and an interval with job options)
        c.call_ok("AddLog", id=group, message="hello", level="warn")
        c.call_ok("Cron", name="pattern", queue=q, data={"a": 1}, schedule="*/5 * * * *")
        c.call_ok(
            "Cron",
            name="interval",
            queue=q,
            repeatEvery=3_600_000,
            maxLimit=3,
            timezone="UTC",
            uniqueKey="k",
            jobOptions={"maxAttempts": 2, "backoff": {"type": "fixed", "delay": 5}},
        )
        get("/api/schedulers")
        get("/api/schedulers", params={"queue": q})
        c.call_ok("RateLimit", queue=q, limit=5, duration=1000, ttl=60_000)
        c.call_ok("SetConcurrency", queue=q, limit=3)
        c.call_ok("RegisterWorker", name="w", queues=[q], hostname="h", pid=1)
        get("/api/workers")
        get("/api/workers", params={"queue": q})
        get("/api/queues/{name}")
    for job_id in (*ids.values(), group):
        get("/jobs/{id}", id=job_id)
        get("/api/queues/{name}/jobs/{id}", id=job_id)
        get("/api/queues/{name}/jobs/{id}/children", id=job_id)
        get("/api/queues/{name}/jobs/{id}/logs", id=job_id)
    for state in ids:
        get("/api/queues/{name}/jobs", params={"state": state})
        get("/api/flows", params={"state": state})
    for granularity in ("minute", "hour"):
        get("/api/queues/{name}/metrics", params={"granularity": granularity})
    for params in (
        {"q": ids["waiting"]},
        {"q": "nothing-has-this-id"},
        {"q": "con", "type": "queue"},
        {"q": "active", "type": "payload", "queue": q},
    ):
        get("/api/search", params=params)
    get("/queues/{queue}/jobs", queue="pullq", params={"timeout": "0"})
    get("/queues/{queue}/jobs", queue="pullq", params={"timeout": "0"})
    call(client, conf, "POST", "/gc", {})

    # errors
    get("/api/queues/{name}", name="no-such-queue")
    get("/api/queues/{name}/jobs/{id}", id="no-such-job")
    get("/api/queues/{name}/jobs/{id}/logs", id="no-such-job")
    get("/api/queues/{name}/jobs", params={"state": "bogus"})
    get("/api/queues/{name}/metrics", params={"from": "yesterday"})
    get("/api/search")
    get("/jobs/{id}", id="no-such-job")
    big = b'{"name": "n", "data": "' + b"x" * 5000 + b'"}'
    for path in ("/api/queues/{name}/jobs", "/queues/{queue}/jobs"):
        call(client, conf, "POST", path, {"name": q, "queue": q}, content=big)
    call(client, conf, "POST", "/api/queues/{name}/pause", {"name": q}, content=b"{")

    # mutations, on a queue of their own
    m = "mut"
    mids = seed_states(client, m)
    v = {"name": m, "queue": m}

    def do(method: str, path: str, **kw: Any) -> httpx.Response:
        values = {**v, **kw.pop("values", {})}
        return call(client, conf, method, path, values, **kw)

    do("POST", "/api/queues/{name}/pause", json={"jobName": "x"})
    do("POST", "/api/queues/{name}/resume", json={"jobName": "x"})
    do("POST", "/api/queues/{name}/pause")
    do("POST", "/api/queues/{name}/resume")
    added = do("POST", "/api/queues/{name}/jobs", json={"name": "n", "data": {"a": 1}}).json()
    do(
        "PATCH",
        "/api/queues/{name}/jobs/{id}",
        values={"id": added["data"]["id"]},
        json={"data": 2},
    )
    do("POST", "/api/queues/{name}/jobs/{id}/retry", values={"id": mids["failed"]})
    do("POST", "/api/queues/{name}/jobs/{id}/retry", values={"id": mids["waiting"]})
    do("POST", "/api/queues/{name}/jobs/{id}/promote", values={"id": mids["delayed"]})
    do("POST", "/api/queues/{name}/jobs/{id}/cancel", values={"id": mids["active"]})
    do("DELETE", "/api/queues/{name}/jobs/{id}", values={"id": mids["completed"]})
    pushed = do("POST", "/queues/{queue}/jobs", json={"data": 1}).json()["id"]
    do("POST", "/queues/{queue}/jobs/bulk", json=[{"data": 1}, {"data": 2}])
    do("DELETE", "/jobs/{id}", values={"id": pushed})
    job, token = take_any(client, m)
    do("POST", "/jobs/{id}/ack", values={"id": job}, json={"token": token, "result": 1})
    job, token = take_any(client, m)
    do("POST", "/jobs/{id}/fail", values={"id": job}, json={"token": token, "error": "x"})
    do("POST", "/jobs/{id}/ack", values={"id": job}, json={"token": token})
    do("POST", "/api/queues/{name}/failures/retry", json={"reason": "exploded"})
    do("POST", "/api/queues/{name}/failures/retry", json={"reason": 1})
    do("POST", "/api/queues/{name}/retry", json={"state": "failed"})
    do("POST", "/api/queues/{name}/promote")
    do("POST", "/api/queues/{name}/clean", json={"state": "completed", "grace": 0})
    do("POST", "/api/queues/{name}/drain")
    do("DELETE", "/api/queues/{name}")
    do("DELETE", "/api/queues/{name}", params={"force": "true"})
    do("POST", "/api/queues/{name}/drain")

    assert conf.problems == []
    every = {(m_, p) for p, ops in doc["paths"].items() for m_ in ops}
    assert every - {(m_, p) for m_, p, _ in conf.checked} == set()


def take_any(client: httpx.Client, queue: str) -> tuple[str, str]:
    resp = client.get(f"/queues/{queue}/jobs")
    body = resp.json()
    assert body["job"] is not None, body
    return body["job"]["id"], body["token"]


def test_auth_and_read_only_answers_conform(start_server: ServerFactory) -> None:
    """Every secured operation without a token: a declared 401; every management mutation
    with a token on a read-only server: a declared 403."""
    server = start_server(AUTH_TOKENS="secret", HOPPER_DASHBOARD_READ_ONLY="1")
    doc = document(server)
    conf = Conformance(doc)
    token = {"Authorization": "Bearer secret"}
    q = "ro"
    with httpx.Client(base_url=server.url, headers=token, timeout=10.0) as authed:
        job_id = push(authed, q)
        values = {"name": q, "queue": q, "id": job_id}
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if op["security"]:
                    resp = call(server.client, conf, method.upper(), path, values)
                    assert resp.status_code == 401, (method, path, resp.status_code)
                if path.startswith("/api/") and method != "get":
                    resp = call(authed, conf, method.upper(), path, values, json={})
                    assert resp.status_code == 403, (method, path, resp.status_code)
        assert api_data(authed.get(f"/api/queues/{q}"))["counts"]["waiting"] == 1
    assert conf.problems == []


# ----- schemathesis -----------------------------------------------------------------------


def test_schemathesis_fuzz(start_server: ServerFactory) -> None:
    """A short, bounded fuzz of every operation (SSE streams excepted: they never end):
    positive and negative data; no 5xx, every status declared, bodies match the schema."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    server = start_server()
    # a few real jobs, so that some generated requests meet existing state
    seed_states(server.client, "fuzz")
    job_id = push(server.client, "fuzz2")
    ack(server.client, job_id, take(server.client, "fuzz2", job_id))
    fail_id = push(server.client, "fuzz2", maxAttempts=1)
    fail(server.client, fail_id, take(server.client, "fuzz2", fail_id))

    schema = schemathesis.openapi.from_dict(document(server))
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    problems: dict[str, str] = {}
    ran = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        success = operation.definition.raw["responses"]
        if any(SSE in r.get("content", {}) for r in success.values()):
            continue
        modes = [(GenerationMode.POSITIVE, 20)]
        if operation.definition.raw.get("parameters") or "requestBody" in operation.definition.raw:
            modes.append((GenerationMode.NEGATIVE, 10))
        for mode, examples in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=timedelta(seconds=5),
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
                database=None,
            )
            def run(case: Any) -> None:
                if case.query and "timeout" in case.query:
                    case.query["timeout"] = 0  # the pull would long-poll
                case.call_and_validate(base_url=server.url, checks=checks, timeout=10)

            try:
                run()
                ran += 1
            except Unsatisfiable:
                pass
            except Exception as e:
                problems[f"{label} ({mode.value})"] = str(e)[:2000]
    elapsed = time.monotonic() - started
    assert problems == {}
    assert ran > 40
    assert elapsed < FUZZ_BUDGET_S, f"the fuzz took {elapsed:.1f} s"
    assert server.proc.poll() is None, "the server died during the fuzz"
