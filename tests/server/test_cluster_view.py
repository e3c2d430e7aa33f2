"""`GET /api/cluster` and the dashboard's Cluster panel with two `hopper serve` brokers on
one test PostgreSQL (as in tests/test_cluster_failover.py): the first owns the slot, the
second stands by; both fronts relay to the first, so it answers through either. Without
PostgreSQL the module is skipped, unless HOPPER_REQUIRE_POSTGRES=1."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from browser_support import TIMEOUT_MS, shot
from hopper.server_process import ServerProcess
from management_support import api_data, api_error, iso_ms
from postgres_server import Postgres
from test_cluster_failover import broker

NAMESPACE = "view"
LIVE_WAIT_S = 10


@pytest.fixture(scope="module")
def brokers(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Broker a (the slot's owner: started first) and broker b (standing by; the panel's
    test stops it)."""
    logs = tmp_path_factory.mktemp("cluster-view")
    a, b = (broker(postgres, name, logs, NAMESPACE) for name in "ab")
    try:
        a.start()
        b.start()  # healthy at once: its front relays to a
        yield a, b
    finally:
        b.stop()
        a.stop()


def both_live(url: str) -> dict[str, Any]:
    """The cluster view once both brokers are announced and live."""
    deadline = time.monotonic() + LIVE_WAIT_S
    while True:
        view = api_data(httpx.get(f"{url}/api/cluster", timeout=10))
        if [(b["id"], b["status"]) for b in view["brokers"]] == [("a", "live"), ("b", "live")]:
            return view  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, view
        time.sleep(0.2)


def test_the_view_lists_both_brokers_and_the_owner(
    brokers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = brokers
    view = both_live(b.url)  # asked at b's front: a's app answers
    assert (view["mode"], view["namespace"], view["servedBy"]) == ("cluster", NAMESPACE, "a")
    [slot] = view["slots"]
    assert (slot["slot"], slot["owner"]) == (0, "a")
    assert slot["epoch"] >= 1
    assert 0 < slot["leaseRemainingMs"] <= 30_000
    assert iso_ms(slot["leaseUntil"]) - iso_ms(view["now"]) == slot["leaseRemainingMs"]
    assert slot["ownerHttp"] and slot["ownerHttp"] != a.url.removeprefix("http://")
    first, second = view["brokers"]
    assert first["http"] == a.url.removeprefix("http://")
    assert second["http"] == b.url.removeprefix("http://")
    assert (first["slots"], second["slots"]) == ([0], [])
    for one in (first, second):
        assert iso_ms(one["startedAt"]) <= iso_ms(one["lastSeenAt"]) <= iso_ms(view["now"])
    assert api_data(httpx.get(f"{a.url}/api/cluster", timeout=10))["servedBy"] == "a"


def test_a_bad_token_is_refused_in_the_documented_shape(postgres: Postgres, tmp_path: Path) -> None:
    guarded = ServerProcess.hopper(
        log=tmp_path / "guarded.log",
        env={
            "HOPPER_POSTGRES_URL": postgres.url,
            "HOPPER_BROKER_ID": "g",
            "HOPPER_NAMESPACE": "guarded",
            "AUTH_TOKENS": "secret",
        },
    )
    with guarded:
        url = f"{guarded.url}/api/cluster"
        bearer = {"Authorization": "Bearer wrong"}
        api_error(httpx.get(url, headers=bearer, timeout=10), 401, "UNAUTHORIZED")
        view = api_data(httpx.get(url, headers={"Authorization": "Bearer secret"}, timeout=10))
        assert view["servedBy"] == "g"


def test_the_dashboard_panel_shows_the_brokers_and_the_slot(
    brokers: tuple[ServerProcess, ServerProcess], browser: Any
) -> None:
    from playwright.sync_api import expect

    a, b = brokers
    both_live(a.url)
    context = browser.new_context(viewport={"width": 420, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(a.url + "/")
        panel = page.get_by_role("region", name="Cluster")
        expect(panel.get_by_test_id("cluster-summary")).to_contain_text("served by a")
        expect(panel.get_by_test_id("cluster-summary")).to_contain_text("2 of 2 brokers live")
        expect(panel.get_by_test_id("slot-row-0")).to_contain_text("a")
        for name, front in (("a", a), ("b", b)):
            row = panel.get_by_test_id(f"broker-row-{name}")
            expect(row).to_contain_text("live")
            expect(row).to_contain_text(front.url.removeprefix("http://"))
        expect(panel.get_by_test_id("broker-row-a")).to_contain_text("owns slot 0")
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        shot(page, "narrow-cluster")
        page.set_viewport_size({"width": 1366, "height": 860})
        shot(page, "cluster")

        # A cleanly stopped broker withdraws its row: the panel's own refresh shows it.
        b.stop()
        expect(panel.get_by_test_id("broker-row-b")).to_have_count(0, timeout=LIVE_WAIT_S * 1000)
        expect(panel.get_by_test_id("cluster-summary")).to_contain_text("1 of 1 broker live")
    finally:
        context.close()


def test_an_unreachable_database_is_a_503_not_a_500() -> None:
    """In process: the route on an app whose PostgreSQL refuses connections (a broker's
    app cannot be reached once its own database is gone, so a real server cannot show it)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from hopper.server.app import HopperApp
    from hopper.server.config import ServerConfig
    from hopper.server.http import HttpError
    from hopper.server.server_engine import ServerEngine

    engine = ServerEngine(**ServerConfig(memory=True).engine_options())
    app = HopperApp(ServerConfig(postgres_url="postgresql://postgres@127.0.0.1:1/x"), engine)
    try:
        found = app.management.router.match("GET", "/cluster")
        assert found is not None
        # A thread of its own: the browser tests' Playwright keeps a loop in this one.
        with ThreadPoolExecutor(1) as thread, pytest.raises(HttpError) as refused:
            thread.submit(asyncio.run, found[0].handler(None)).result()
        assert (refused.value.status, refused.value.code) == (503, "UNAVAILABLE")
        assert refused.value.message.startswith("Cannot read the cluster from PostgreSQL: ")
    finally:
        engine.close()
