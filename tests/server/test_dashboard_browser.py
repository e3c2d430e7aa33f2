"""The dashboard page in a real browser (Debian's Chromium driven by Playwright from PyPI)
against the real server on loopback with real jobs. Screenshots of each view are saved
under test-artifacts/screenshots/.

Without Chromium the tests are skipped with the reason, unless HOPPER_REQUIRE_BROWSER=1
(`.ci/run` sets it after installing Chromium), where a missing browser is a failure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import Server
from tcp_client import Conn

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 10_000

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        if os.environ.get("HOPPER_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (HOPPER_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    external: list[str] = []
    pg.on(
        "request",
        lambda r: (
            external.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:")) else None
        ),
    )
    yield pg
    context.close()
    assert not external, f"the page made external requests: {external}"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def push(client: httpx.Client, queue: str, **body: Any) -> str:
    r = client.post(f"/queues/{queue}/jobs", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def fail_for_good(client: httpx.Client, queue: str, error: str) -> str:
    job_id = push(client, queue, data={"kind": "will-fail"}, maxAttempts=1)
    pulled = client.get(f"/queues/{queue}/jobs").json()
    assert pulled["job"]["id"] == job_id
    client.post(f"/jobs/{job_id}/fail", json={"error": error, "token": pulled["token"]})
    return job_id


def count(page: Any, queue: str, state: str) -> Any:
    return page.get_by_test_id(f"count-{queue}-{state}")


@pytest.mark.smoke
def test_overview_lists_queues_live_and_views_render(server: Server, page: Any, queue: str) -> None:
    c = server.client
    failed = fail_for_good(c, queue, "smtp timeout")
    for i in range(3):
        push(c, queue, data={"to": f"user{i}@example.com"}, name="welcome")
    page.goto(server.url + "/")
    playwright_api.expect(count(page, queue, "waiting")).to_have_text("3")
    playwright_api.expect(count(page, queue, "failed")).to_have_text("1")
    playwright_api.expect(page.get_by_test_id("failures")).to_contain_text("smtp timeout")
    shot(page, "overview")

    # A job pushed through the job server API shows up without a reload (SSE).
    push(c, queue, data={"late": True})
    playwright_api.expect(count(page, queue, "waiting")).to_have_text("4")

    page.get_by_test_id(f"queue-row-{queue}").get_by_role("link", name=queue).click()
    playwright_api.expect(page.get_by_test_id("queue-title")).to_contain_text(queue)
    shot(page, "queue")

    with Conn(server.tcp_port) as tcp:
        tcp.call_ok("AddLog", id=failed, message="connecting to smtp.example.com")
        tcp.call_ok("AddLog", id=failed, message="no answer in 30 s", level="error")
    page.goto(f"{server.url}/#/job/{queue}/{failed}")
    playwright_api.expect(page.get_by_test_id("job-error")).to_have_text("smtp timeout")
    lines = page.get_by_test_id("job-logs").get_by_test_id("log-line")
    playwright_api.expect(lines).to_have_count(2)
    playwright_api.expect(lines.nth(0)).to_contain_text("connecting to smtp.example.com")
    playwright_api.expect(lines.nth(1)).to_contain_text("error")
    playwright_api.expect(lines.nth(1)).to_contain_text("no answer in 30 s")
    shot(page, "job")

    page.locator("#search").fill("user1@example")
    page.locator("#search").press("Enter")
    page.locator("select").first.select_option(queue)
    playwright_api.expect(page.get_by_test_id("payload-results")).to_contain_text(
        "user1@example.com"
    )
    shot(page, "search")


def test_queue_limits_workers_and_schedulers_are_shown(
    server: Server, page: Any, queue: str
) -> None:
    push(server.client, queue, data=1)
    cron = f"nightly-{queue}"
    with Conn(server.tcp_port) as tcp:
        tcp.call_ok("RateLimit", queue=queue, limit=5, duration=60_000)
        tcp.call_ok("SetConcurrency", queue=queue, limit=2)
        worker = tcp.call_ok(
            "RegisterWorker", name="thumbnailer", queues=[queue], workerId=f"w-{queue}"
        )["data"]["workerId"]
        tcp.call_ok("Cron", name=cron, queue=queue, schedule="0 3 * * *", maxLimit=7)
        try:
            page.goto(f"{server.url}/#/queue/{queue}")
            limits = page.get_by_test_id("queue-limits")
            playwright_api.expect(limits).to_contain_text("Rate limit: 5 per 60000 ms")
            playwright_api.expect(limits).to_contain_text("Concurrency: 2")
            own = page.get_by_test_id(f"scheduler-row-{cron}")
            playwright_api.expect(own).to_contain_text("0 3 * * *")
            playwright_api.expect(own).to_contain_text("7")
            page.goto(server.url + "/")
            row = page.get_by_test_id(f"worker-row-{worker}")
            playwright_api.expect(row).to_contain_text("thumbnailer")
            playwright_api.expect(row).to_contain_text(queue)
            playwright_api.expect(row).to_contain_text("live")
            sched = page.get_by_test_id(f"scheduler-row-{cron}")
            playwright_api.expect(sched).to_contain_text(queue)
            playwright_api.expect(sched).to_contain_text("0 3 * * *")
            playwright_api.expect(sched).to_contain_text("in ")
            shot(page, "workers")
        finally:
            tcp.call("CronDelete", name=cron)


def test_retrying_a_failed_job_from_the_page_moves_it(
    server: Server, page: Any, queue: str
) -> None:
    c = server.client
    failed = fail_for_good(c, queue, "boom")
    page.goto(f"{server.url}/#/queue/{queue}?state=failed")
    page.get_by_test_id(f"retry-{failed}").click()
    playwright_api.expect(page.get_by_test_id("tab-waiting")).to_contain_text("(1)")
    assert c.get(f"/jobs/{failed}").json()["job"]["state"] == "waiting"


def test_read_only_mode_hides_every_action(start_server: Any, page: Any) -> None:
    s = start_server(HOPPER_DASHBOARD_READ_ONLY="1")
    fail_for_good(s.client, "ro", "nope")
    page.goto(s.url + "/#/queue/ro?state=failed")
    playwright_api.expect(page.get_by_test_id("queue-title")).to_contain_text("ro")
    assert page.locator(".action:visible").count() == 0
    assert (
        page.get_by_role("button", name="Retry").count() == 0
        or not page.get_by_role("button", name="Retry").first.is_visible()
    )
    playwright_api.expect(page.locator("#ro-banner")).to_be_visible()
    shot(page, "read-only")


def test_a_wrong_token_shows_the_sign_in_prompt(start_server: Any, page: Any) -> None:
    s = start_server(AUTH_TOKENS="right-token")
    push(
        s.client.__class__(base_url=s.url, headers={"authorization": "Bearer right-token"}),
        "authq",
        data=1,
    )
    page.goto(s.url + "/")
    dialog = page.locator("#auth-dialog")
    playwright_api.expect(dialog).to_be_visible()
    page.locator("#auth-token").fill("wrong-token")
    page.get_by_role("button", name="Sign in").click()
    playwright_api.expect(dialog).to_be_visible()  # refused: asked again
    playwright_api.expect(page.locator("#auth-message")).to_contain_text("refused")
    shot(page, "auth-prompt")
    page.locator("#auth-token").fill("right-token")
    page.get_by_role("button", name="Sign in").click()
    playwright_api.expect(count(page, "authq", "waiting")).to_have_text("1")


def test_the_page_works_under_a_base_path_in_dark_theme(start_server: Any, page: Any) -> None:
    s = start_server(HOPPER_DASHBOARD_BASE_PATH="/ops")
    push(s.client, "based", data=1)
    page.goto(s.url + "/ops/")
    playwright_api.expect(count(page, "based", "waiting")).to_have_text("1")
    page.locator("#theme").click()
    theme = page.evaluate("document.documentElement.dataset.theme")
    assert theme in ("dark", "light")
    if theme != "dark":
        page.locator("#theme").click()
    shot(page, "overview-dark")
