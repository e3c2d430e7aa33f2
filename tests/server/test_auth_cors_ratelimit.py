"""Bearer-token auth (AUTH_TOKENS, METRICS_AUTH), CORS (preflight and the
Access-Control-Allow-Origin header on every response) and the per-client rate limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support import (
    Server,
    ServerFactory,
    expect_error,
    expect_ok,
    get_job,
    pull,
    push,
    run_server,
)

TOKEN = "tok1"
OTHER_TOKEN = "tok2"
ORIGIN = "https://a.example"
GOOD = {"Authorization": f"Bearer {TOKEN}"}
UNAUTHORIZED = {"ok": False, "error": "Unauthorized"}
BAD_AUTH_HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": "Bearer"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN},{OTHER_TOKEN}"},
]
PREFLIGHT = {
    "access-control-allow-methods": "GET, POST, PUT, DELETE, OPTIONS",
    "access-control-allow-headers": "Content-Type, Authorization",
    "access-control-max-age": "86400",
}


@pytest.fixture(scope="module")
def auth_server(server_workdir: Path) -> Iterator[Server]:
    with run_server(
        server_workdir, AUTH_TOKENS=f"{TOKEN}, {OTHER_TOKEN}", CORS_ALLOW_ORIGIN=ORIGIN
    ) as s:
        yield s


# ----- auth --------------------------------------------------------------------------------

Call = Callable[[httpx.Client, dict[str, str]], httpx.Response]


def _protected_calls(client: httpx.Client) -> dict[str, tuple[Call, int]]:
    """Each protected endpoint as a call, and its status with a good token. Jobs the calls
    act on are prepared here (with the token) so the good call succeeds."""
    queue = f"auth-{time.monotonic_ns()}"
    c = httpx.Client(base_url=client.base_url, headers=GOOD, timeout=10)
    with c:
        to_get = push(c, queue + "-get")
        to_delete = push(c, queue + "-del")
        to_ack = push(c, queue + "-ack")
        pull(c, queue + "-ack")
        to_fail = push(c, queue + "-fail")
        pull(c, queue + "-fail")
    return {
        "push": (lambda cl, h: cl.post(f"/queues/{queue}/jobs", json={"data": 1}, headers=h), 200),
        "bulk": (
            lambda cl, h: cl.post(
                f"/queues/{queue}/jobs/bulk", json={"jobs": [{"data": 1}]}, headers=h
            ),
            200,
        ),
        "pull": (lambda cl, h: cl.get(f"/queues/{queue}-empty/jobs", headers=h), 200),
        "get": (lambda cl, h: cl.get(f"/jobs/{to_get}", headers=h), 200),
        "delete": (lambda cl, h: cl.delete(f"/jobs/{to_delete}", headers=h), 200),
        "ack": (lambda cl, h: cl.post(f"/jobs/{to_ack}/ack", json={}, headers=h), 200),
        "fail": (lambda cl, h: cl.post(f"/jobs/{to_fail}/fail", json={}, headers=h), 200),
        "get-unknown": (lambda cl, h: cl.get("/jobs/nope", headers=h), 404),
        "stats": (lambda cl, h: cl.get("/stats", headers=h), 200),
        "metrics": (lambda cl, h: cl.get("/metrics", headers=h), 200),
        "events": (lambda cl, h: _sse_status(cl, "/events", h), 200),
        "events-queue": (lambda cl, h: _sse_status(cl, f"/events/queues/{queue}", h), 200),
    }


def _sse_status(client: httpx.Client, path: str, headers: dict[str, str]) -> httpx.Response:
    with client.stream("GET", path, headers=headers) as resp:
        if resp.status_code != 200:
            resp.read()
        return resp


def test_protected_endpoints_need_a_token(auth_server: Server) -> None:
    client = auth_server.client
    for name, (call, good_status) in _protected_calls(client).items():
        for headers in BAD_AUTH_HEADERS:
            resp = call(client, headers)
            assert resp.status_code == 401, (name, headers, resp.status_code)
            assert resp.json() == UNAUTHORIZED, name
            assert resp.headers["access-control-allow-origin"] == ORIGIN, name
        resp = call(client, GOOD)
        assert resp.status_code == good_status, (name, resp.status_code, resp.text)


def test_refused_calls_change_nothing(auth_server: Server) -> None:
    with httpx.Client(base_url=auth_server.url, headers=GOOD, timeout=10) as good:
        job_id = push(good, "auth-intact")
        pull(good, "auth-intact")
        before = get_job(good, job_id)
        client = auth_server.client
        for headers in BAD_AUTH_HEADERS:
            expect_error(client.post(f"/jobs/{job_id}/ack", headers=headers), 401)
            expect_error(client.delete(f"/jobs/{job_id}", headers=headers), 401)
            expect_error(
                client.post("/queues/auth-intact/jobs", json={"data": 1}, headers=headers), 401
            )
        assert get_job(good, job_id) == before
        assert good.get("/queues/auth-intact/jobs").json()["job"] is None


def test_every_configured_token_works(auth_server: Server) -> None:
    for token in (TOKEN, OTHER_TOKEN):
        resp = auth_server.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        expect_ok(resp)


# The page's probes and debug endpoints: no auth, and not rate limited.
PROBES = [
    ("GET", "/health", 200),
    ("GET", "/healthz", 200),
    ("GET", "/live", 200),
    ("GET", "/ready", 200),
    ("POST", "/gc", 200),
    ("GET", "/heapstats", 200),
]
HEAD_PROBES = [("HEAD", path, 200) for path in ("/health", "/healthz", "/live", "/ready")]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        *PROBES,
        *HEAD_PROBES,
        ("GET", "/prometheus", 200),
        ("OPTIONS", "/stats", 204),
        ("OPTIONS", "/queues/q/jobs", 204),
        ("OPTIONS", "/jobs/x/ack", 204),
    ],
)
def test_exempt_endpoints_are_open(
    auth_server: Server, method: str, path: str, status: int
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = auth_server.client.request(method, path, headers=headers)
        assert resp.status_code == status, (path, headers, resp.text)
        assert resp.headers["access-control-allow-origin"] == ORIGIN


def test_metrics_auth_protects_prometheus(start_server: ServerFactory) -> None:
    server = start_server(AUTH_TOKENS=TOKEN, METRICS_AUTH="true")
    for headers in BAD_AUTH_HEADERS:
        resp = server.client.get("/prometheus", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.json() == UNAUTHORIZED
    resp = server.client.get("/prometheus", headers=GOOD)
    assert resp.status_code == 200
    assert "bunqueue_jobs_pushed_total" in resp.text
    expect_ok(server.client.get("/health"))  # the probes stay open


def test_authorization_header_forms(auth_server: Server) -> None:
    """The scheme in any case and more than one space before the token are accepted (RFC
    9110's credentials syntax); a bare token, a tab, another scheme or a `?token=` query
    are not. bunqueue 2.9.5 takes exactly `Bearer ` and also a bare token."""
    client = auth_server.client
    for value in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer   {TOKEN}"):
        assert client.get("/stats", headers={"Authorization": value}).status_code == 200, value
    for value in (TOKEN, f"Bearer\t{TOKEN}", f"Token {TOKEN}", f"Bearer {TOKEN} x"):
        resp = client.get("/stats", headers={"Authorization": value})
        assert resp.status_code == 401, value
        assert resp.json() == UNAUTHORIZED
    assert client.get("/stats", params={"token": TOKEN}).status_code == 401


def test_unknown_routes_need_the_token_first(auth_server: Server) -> None:
    """Under auth a path no route answers is a 401 without the token, and its 404 or
    405 only with it (bunqueue 2.9.5 answers the same way); the open paths keep their
    405 for another method."""
    client = auth_server.client
    for method, path, status in (
        ("GET", "/nope", 404),
        ("POST", "/queues/q/jobs/nope", 404),
        ("PUT", "/jobs/x", 405),
        ("HEAD", "/stats", 405),
        ("GET", "/ws", 404),  # the socket's path over plain HTTP
    ):
        for headers in BAD_AUTH_HEADERS:
            resp = client.request(method, path, headers=headers)
            assert resp.status_code == 401, (method, path, headers)
            if method != "HEAD":
                assert resp.json() == UNAUTHORIZED
        assert client.request(method, path, headers=GOOD).status_code == status, (method, path)
    for method, path in (("POST", "/health"), ("PUT", "/ready"), ("GET", "/gc")):
        assert client.request(method, path).status_code == 405, (method, path)


def test_no_auth_configured_means_open(client: httpx.Client) -> None:
    expect_ok(client.get("/stats"))
    expect_ok(client.get("/stats", headers={"Authorization": "Bearer anything"}))


# ----- CORS --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/queues/emails/jobs", "/jobs/x", "/jobs/x/ack", "/nope/deeper", "/ws", "/events"]
)
def test_preflight_on_any_path(client: httpx.Client, path: str) -> None:
    resp = client.options(
        path,
        headers={
            "Origin": "https://elsewhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Authorization",
        },
    )
    assert resp.status_code == 204
    assert resp.content == b""
    assert "content-type" not in resp.headers  # a 204 has no content to describe
    assert resp.headers["access-control-allow-origin"] == "*"
    for name, value in PREFLIGHT.items():
        assert resp.headers[name] == value, name


def test_allow_origin_on_every_response(client: httpx.Client, queue: str) -> None:
    job_id = push(client, queue)
    responses = {
        "push": client.post(f"/queues/{queue}/jobs", json={"data": 1}),
        "get": client.get(f"/jobs/{job_id}"),
        "pull-empty": client.get(f"/queues/{queue}-none/jobs"),
        "400": client.post(f"/queues/{queue}/jobs", content=b"{"),
        "400-ack": client.post(f"/jobs/{job_id}/ack"),
        "404-job": client.get("/jobs/nope"),
        "404-route": client.get("/nope"),
        "413": client.post(f"/queues/{queue}/jobs", content=b" " * (16 * 1024 * 1024 + 1)),
        "healthz": client.get("/healthz"),
        "prometheus": client.get("/prometheus"),
        "gc": client.post("/gc"),
    }
    with client.stream("GET", "/events") as sse:
        responses["sse"] = sse
    for name, resp in responses.items():
        assert resp.headers.get("access-control-allow-origin") == "*", name


def test_custom_allow_origin_is_echoed(auth_server: Server) -> None:
    client = auth_server.client
    for resp in (
        client.get("/health"),
        client.get("/stats"),  # 401
        client.get("/stats", headers=GOOD),
        client.get("/nope", headers=GOOD),
        client.post("/queues/q/jobs", content=b"{", headers=GOOD),
        client.options("/anything"),
    ):
        assert resp.headers["access-control-allow-origin"] == ORIGIN, resp.url


def test_allow_origin_list_answers_each_origin(start_server: ServerFactory) -> None:
    """With several origins, a response carries the request's Origin when it is listed,
    else the first listed one, and `Vary: Origin` (bunqueue 2.9.5 sends the whole list
    as one value, which browsers refuse)."""
    a, b = "https://a.example", "https://b.example"
    server = start_server(CORS_ALLOW_ORIGIN=f"{a}, {b}", AUTH_TOKENS=TOKEN)
    client = server.client
    calls: dict[str, Callable[[dict[str, str]], httpx.Response]] = {
        "health": lambda h: client.get("/health", headers=h),
        "401": lambda h: client.get("/stats", headers=h),
        "200": lambda h: client.get("/stats", headers={**h, **GOOD}),
        "404": lambda h: client.get("/nope", headers={**h, **GOOD}),
        "preflight": lambda h: client.options(
            "/queues/q/jobs", headers={**h, "Access-Control-Request-Method": "POST"}
        ),
        "sse": lambda h: _sse_status(client, "/events", {**h, **GOOD}),
    }
    for origin, expected in ((b, b), (a, a), ("https://c.example", a), (None, a)):
        headers = {"Origin": origin} if origin else {}
        for name, call in calls.items():
            resp = call(headers)
            assert resp.headers["access-control-allow-origin"] == expected, (name, origin)
            assert resp.headers["vary"] == "Origin", name


def test_allow_origin_list_with_a_star_allows_all(start_server: ServerFactory) -> None:
    server = start_server(CORS_ALLOW_ORIGIN="https://a.example,*")
    resp = server.client.get("/health", headers={"Origin": "https://z.example"})
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "vary" not in resp.headers


def test_one_origin_needs_no_vary(auth_server: Server, client: httpx.Client) -> None:
    for c in (auth_server.client, client):
        resp = c.get("/health", headers={"Origin": "https://z.example"})
        assert "vary" not in resp.headers


# ----- rate limit --------------------------------------------------------------------------

RATE_LIMITED = {"ok": False, "error": "Rate limit exceeded"}


@pytest.fixture
def limited(start_server: ServerFactory) -> Server:
    return start_server(RATE_LIMIT_MAX_REQUESTS="5", RATE_LIMIT_WINDOW_MS="10000")


def test_sixth_request_is_rate_limited(limited: Server) -> None:
    client = limited.client
    for i in range(5):
        assert client.get("/metrics").status_code == 200, i
    for _ in range(3):
        resp = client.get("/metrics")
        assert resp.status_code == 429
        assert resp.json() == RATE_LIMITED
        assert resp.headers["access-control-allow-origin"] == "*"
    # Every limited route counts against the same budget.
    resp = client.post("/queues/rl/jobs", json={"data": 1})
    assert resp.status_code == 429
    assert resp.json() == RATE_LIMITED
    # Another client is not affected, by X-Forwarded-For or by X-Real-IP.
    expect_ok(client.get("/metrics", headers={"X-Forwarded-For": "10.0.0.2"}))
    expect_ok(client.get("/metrics", headers={"X-Real-IP": "10.0.0.3"}))


def test_forwarded_for_uses_the_first_address(limited: Server) -> None:
    client = limited.client
    for _ in range(5):
        expect_ok(client.get("/metrics", headers={"X-Forwarded-For": "10.0.0.7"}))
    resp = client.get("/metrics", headers={"X-Forwarded-For": "10.0.0.7, 10.0.0.8"})
    assert resp.status_code == 429
    expect_ok(client.get("/metrics", headers={"X-Forwarded-For": "10.0.0.8, 10.0.0.7"}))
    expect_ok(client.get("/metrics"))  # no header: its own ("unknown") budget


def test_probes_are_not_rate_limited(limited: Server) -> None:
    client = limited.client
    for _ in range(6):
        client.get("/metrics")
    assert client.get("/metrics").status_code == 429
    for _ in range(3):
        for method, path, status in (*PROBES, *HEAD_PROBES, ("OPTIONS", "/metrics", 204)):
            assert client.request(method, path).status_code == status, path
        for method, path in (("POST", "/health"), ("GET", "/gc")):  # wrong method: 405
            assert client.request(method, path).status_code == 405, path


def test_misses_count_against_the_rate_limit(limited: Server) -> None:
    """Unknown paths (404) and known paths with another method (405) count, as in
    bunqueue 2.9.5; each client (by X-Forwarded-For) has its own budget."""
    client = limited.client
    for client_ip, method, path, status in (
        ("10.1.0.1", "GET", "/nope", 404),
        ("10.1.0.2", "PUT", "/stats", 405),
        ("10.1.0.3", "GET", "/ws", 404),
    ):
        headers = {"X-Forwarded-For": client_ip}
        for _ in range(5):
            assert client.request(method, path, headers=headers).status_code == status, path
        resp = client.get("/metrics", headers=headers)
        assert resp.status_code == 429, path
        assert resp.json() == RATE_LIMITED
        assert client.request(method, path, headers=headers).status_code == 429, path


def test_rate_limit_window_passes(start_server: ServerFactory) -> None:
    server = start_server(RATE_LIMIT_MAX_REQUESTS="3", RATE_LIMIT_WINDOW_MS="300")
    client = server.client
    deadline = time.monotonic() + 5
    # Exhaust the budget (bounded: on a slow machine a request may leave the 300 ms window
    # before the fourth is sent).
    while client.get("/metrics").status_code != 429:
        assert time.monotonic() < deadline, "never limited"
    time.sleep(0.7)  # two windows later the old requests no longer count
    expect_ok(client.get("/metrics"))


def test_rejected_requests_count_before_auth(start_server: ServerFactory) -> None:
    server = start_server(AUTH_TOKENS=TOKEN, RATE_LIMIT_MAX_REQUESTS="5")
    client = server.client
    for _ in range(5):
        assert client.get("/metrics").status_code == 401
    resp = client.get("/metrics", headers=GOOD)
    assert resp.status_code == 429
    assert resp.json() == RATE_LIMITED
