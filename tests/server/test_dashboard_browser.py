"""The dashboard page in a real browser (Chromium, see browser_support.py) against the
real server on loopback with real jobs. Screenshots of each view are saved under
test-artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser_support import TIMEOUT_MS, shot
from support import Server
from tcp_client import Conn

playwright_api = pytest.importorskip("playwright.sync_api")


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
            # outside cluster mode the cluster view is one line
            playwright_api.expect(page.get_by_test_id("cluster")).to_have_text(
                "Single server: not part of a cluster."
            )
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
    # A first visit has sent no token: it asks for one, it does not say one was refused.
    playwright_api.expect(page.locator("#auth-message")).to_contain_text("requires a bearer token")
    playwright_api.expect(page.get_by_test_id("auth-needed")).to_be_visible()
    assert "refused" not in page.locator("#auth-message").inner_text()
    shot(page, "auth-first-visit")
    page.locator("#auth-token").fill("wrong-token")
    page.get_by_role("button", name="Sign in").click()
    playwright_api.expect(dialog).to_be_visible()  # refused: asked again
    playwright_api.expect(page.locator("#auth-message")).to_contain_text("refused")
    # The status says why nothing is live, not "reconnecting" with a token that cannot work.
    playwright_api.expect(page.locator("#live-text")).to_have_text("token refused")
    shot(page, "auth-prompt")
    page.locator("#auth-token").fill("right-token")
    page.get_by_role("button", name="Sign in").click()
    playwright_api.expect(count(page, "authq", "waiting")).to_have_text("1")
    playwright_api.expect(page.locator("#live-text")).to_have_text("live")


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


# ----- layout, states and actions (each checked on the DOM or the computed layout) ------

NO_PAGE_OVERFLOW = "document.documentElement.scrollWidth <= innerWidth"

# Every visible input with a placeholder: the placeholder's text width (measured in the
# input's own font) against the input's content box. Returns the ones that cut it off.
CUT_PLACEHOLDERS = """() => {
  const ctx = document.createElement("canvas").getContext("2d");
  const out = [];
  for (const el of document.querySelectorAll("input[placeholder]")) {
    const r = el.getBoundingClientRect();
    if (!r.width || !el.offsetParent && getComputedStyle(el).position !== "fixed") continue;
    const cs = getComputedStyle(el);
    ctx.font = cs.font;
    const text = ctx.measureText(el.placeholder).width;
    const room = el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    if (text > room) out.push(`${el.placeholder}: ${Math.round(text)} > ${Math.round(room)}`);
  }
  return out;
}"""


# Job links (ids) that wrap onto more than one line. An inline link has a client rect per
# piece of text on each line it spans; pieces on one line share their top.
WRAPPED_JOB_LINKS = """() => [...document.querySelectorAll('a[href^="#/job/"]')]
  .map((a) => {
    const rects = [...a.getClientRects()].filter((r) => r.width > 0);
    const lines = [];
    for (const r of rects) {
      if (!lines.some((top) => Math.abs(top - r.top) < r.height / 2)) lines.push(r.top);
    }
    return [a.textContent, lines.length];
  })
  .filter(([, lines]) => lines > 1)
  .map(([text, lines]) => `${text}: ${lines} lines`)"""


def new_page(browser: Any, width: int = 1366, height: int = 860, theme: str = "light") -> Any:
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=theme)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    return pg


def complete(client: httpx.Client, queue: str, **body: Any) -> str:
    job_id = push(client, queue, **body)
    pulled = client.get(f"/queues/{queue}/jobs").json()
    assert pulled["job"]["id"] == job_id
    r = client.post(f"/jobs/{job_id}/ack", json={"token": pulled["token"], "result": {"ok": 1}})
    assert r.status_code == 200, r.text
    return job_id


def mgmt(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api")


def test_a_narrow_screen_scrolls_tables_inside_their_panel(
    server: Server, browser: Any, queue: str
) -> None:
    c = server.client
    failed = fail_for_good(c, queue, "connection reset by peer while talking to smtp " * 3)
    for i in range(3):
        push(c, queue, data={"to": f"user{i}@example.com"}, name="a-rather-long-job-name")
    pg = new_page(browser, width=420, height=800)
    try:
        pg.goto(server.url + "/")
        playwright_api.expect(count(pg, queue, "waiting")).to_have_text("3")
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        # The wide queue table scrolls sideways inside its panel.
        wrap = pg.get_by_test_id("queues").locator("xpath=..")
        assert wrap.evaluate("e => getComputedStyle(e).overflowX") == "auto"
        assert wrap.evaluate("e => e.scrollWidth > e.clientWidth")
        panel = wrap.locator("xpath=..").bounding_box()
        assert panel is not None and panel["x"] + panel["width"] <= 420
        shot(pg, "narrow-overview")
        for hash_, testid in (
            (f"#/queue/{queue}?state=failed", "queue-title"),
            (f"#/queue/{queue}", "queue-title"),
            (f"#/job/{queue}/{failed}", "job-title"),
        ):
            pg.goto(f"{server.url}/{hash_}")
            playwright_api.expect(pg.get_by_test_id(testid)).to_be_visible()
            playwright_api.expect(pg.get_by_test_id("loading")).to_have_count(0)
            assert pg.evaluate(NO_PAGE_OVERFLOW), hash_
        shot(pg, "narrow-job")
        pg.goto(f"{server.url}/#/queue/{queue}?state=failed")
        playwright_api.expect(pg.get_by_test_id(f"job-row-{failed}")).to_be_visible()
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        shot(pg, "narrow-queue")
    finally:
        pg.context.close()


def test_placeholders_fit_their_inputs(server: Server, browser: Any, queue: str) -> None:
    push(server.client, queue, data={"x": 1})
    for width in (1366, 420):
        pg = new_page(browser, width=width)
        try:
            pg.goto(server.url + "/")
            playwright_api.expect(count(pg, queue, "waiting")).to_have_text("1")
            assert pg.evaluate(CUT_PLACEHOLDERS) == [], width
            pg.goto(f"{server.url}/#/queue/{queue}")
            playwright_api.expect(pg.get_by_test_id("pause-name")).to_be_visible()
            assert pg.evaluate(CUT_PLACEHOLDERS) == [], width
        finally:
            pg.context.close()


def test_a_loading_state_shows_until_the_data_is_in(server: Server, page: Any, queue: str) -> None:
    push(server.client, queue, data=1)
    held: list[Any] = []
    page.route("**/api/queues", lambda route: held.append(route))
    page.goto(server.url + "/")
    playwright_api.expect(page.get_by_test_id("loading")).to_be_visible()
    playwright_api.expect(page.get_by_test_id("loading")).to_contain_text("Loading")
    while not held:
        page.wait_for_timeout(20)
    held.pop().continue_()
    page.unroute("**/api/queues")
    playwright_api.expect(count(page, queue, "waiting")).to_have_text("1")
    playwright_api.expect(page.get_by_test_id("loading")).to_have_count(0)

    # Moving to another view shows the loading state again until its data is in.
    page.route(f"**/api/queues/{queue}", lambda route: held.append(route))
    page.get_by_test_id(f"queue-row-{queue}").get_by_role("link", name=queue).click()
    playwright_api.expect(page.get_by_test_id("loading")).to_be_visible()
    while not held:
        page.wait_for_timeout(20)
    held.pop().continue_()
    page.unroute(f"**/api/queues/{queue}")
    playwright_api.expect(page.get_by_test_id("queue-title")).to_contain_text(queue)


def test_pause_resume_and_bulk_buttons_are_enabled_only_when_they_act(
    server: Server, page: Any, queue: str
) -> None:
    push(server.client, queue, data=1)  # one waiting job, nothing in any other state
    with mgmt(server) as api:
        assert api.post(f"/queues/{queue}/pause", json={}).status_code == 200
    page.goto(f"{server.url}/#/queue/{queue}")
    playwright_api.expect(page.get_by_test_id("queue-title")).to_contain_text("paused")
    playwright_api.expect(page.get_by_test_id("pause")).to_be_disabled()
    playwright_api.expect(page.get_by_test_id("resume")).to_be_enabled()
    for testid in ("retry-failed", "retry-completed", "promote-delayed", "clean"):
        playwright_api.expect(page.get_by_test_id(testid)).to_be_disabled()
    playwright_api.expect(page.get_by_test_id("drain")).to_be_enabled()  # one waiting job
    page.get_by_test_id("clean-state").select_option("waiting")
    playwright_api.expect(page.get_by_test_id("clean")).to_be_enabled()
    shot(page, "queue-paused")

    page.get_by_test_id("resume").click()
    playwright_api.expect(page.get_by_test_id("pause")).to_be_enabled()
    playwright_api.expect(page.get_by_test_id("resume")).to_be_disabled()
    # A job name that is not paused: only Pause acts on it.
    page.get_by_test_id("pause-name").fill("welcome")
    playwright_api.expect(page.get_by_test_id("resume")).to_be_disabled()
    page.get_by_test_id("pause").click()
    # The view re-renders from the server after the action; the paused name shown is
    # the new render (filling the old one's input would race with it).
    playwright_api.expect(page.get_by_text("Paused job names: welcome")).to_be_visible()
    page.get_by_test_id("pause-name").fill("welcome")
    playwright_api.expect(page.get_by_test_id("pause")).to_be_disabled()
    playwright_api.expect(page.get_by_test_id("resume")).to_be_enabled()


def test_a_redraw_for_an_event_keeps_what_the_user_typed(
    server: Server, page: Any, queue: str
) -> None:
    push(server.client, queue, data=1)
    page.goto(f"{server.url}/#/queue/{queue}")
    waiting_tab = page.get_by_test_id("tab-waiting")
    playwright_api.expect(waiting_tab).to_contain_text("(1)")
    page.get_by_test_id("pause-name").fill("half-typ")
    page.get_by_test_id("clean-state").select_option("waiting")
    push(server.client, queue, data=2)  # its event redraws the view
    playwright_api.expect(waiting_tab).to_contain_text("(2)")
    name = page.get_by_test_id("pause-name")
    playwright_api.expect(name).to_have_value("half-typ")
    playwright_api.expect(page.get_by_test_id("clean-state")).to_have_value("waiting")
    # The redrawn controls act on the kept values: a name that is not paused can be
    # paused, and clean has two waiting jobs to act on.
    playwright_api.expect(page.get_by_test_id("resume")).to_be_disabled()
    playwright_api.expect(page.get_by_test_id("clean")).to_be_enabled()


def test_every_bulk_action_asks_for_confirmation(server: Server, page: Any, queue: str) -> None:
    c = server.client
    done = complete(c, queue, data={"n": 1})
    fail_for_good(c, queue, "nope")
    push(c, queue, data={"later": 1}, delay=600_000)
    push(c, queue, data={"now": 1})
    page.goto(f"{server.url}/#/queue/{queue}")
    playwright_api.expect(page.get_by_test_id("tab-completed")).to_contain_text("(1)")
    dialog = page.locator("#confirm-dialog")
    bulk = page.locator("[data-bulk]")
    assert bulk.count() == 6  # retry failed, retry completed, promote, clean, drain, obliterate
    for i in range(bulk.count()):
        button = bulk.nth(i)
        playwright_api.expect(button).to_be_enabled()
        button.click()
        playwright_api.expect(dialog).to_be_visible()
        page.get_by_test_id("confirm-cancel").click()
        playwright_api.expect(dialog).to_be_hidden()
    # Nothing happened: every job is where it was.
    assert c.get(f"/jobs/{done}").json()["job"]["state"] == "completed"

    page.get_by_test_id("retry-completed").click()
    playwright_api.expect(page.locator("#confirm-text")).to_contain_text("1 completed job")
    shot(page, "confirm-retry-completed")
    page.get_by_test_id("confirm-ok").click()
    playwright_api.expect(page.get_by_test_id("tab-completed")).to_contain_text("(0)")
    assert c.get(f"/jobs/{done}").json()["job"]["state"] == "waiting"

    # The overview's "Retry all" by failure reason confirms too.
    page.goto(server.url + "/")
    page.get_by_test_id("failures").get_by_test_id("retry-reason").first.click()
    playwright_api.expect(dialog).to_be_visible()
    page.get_by_test_id("confirm-cancel").click()


def test_the_throughput_chart_has_a_legend_and_a_y_axis(
    server: Server, page: Any, queue: str
) -> None:
    c = server.client
    for _ in range(5):
        complete(c, queue, data=1)
    fail_for_good(c, queue, "boom")
    page.goto(f"{server.url}/#/queue/{queue}")
    chart = page.get_by_test_id("metrics-chart")
    playwright_api.expect(chart).to_be_visible()
    legend = page.get_by_test_id("chart-legend")
    playwright_api.expect(legend).to_contain_text("completed (5)")
    playwright_api.expect(legend).to_contain_text("failed (1)")
    ticks = chart.locator("text.y-tick").evaluate_all("els => els.map(e => e.textContent)")
    assert len(ticks) >= 3 and ticks[0] == "0", ticks
    assert [int(t) for t in ticks] == sorted(int(t) for t in ticks)
    assert int(ticks[-1]) >= 6
    playwright_api.expect(chart.get_by_test_id("y-title")).to_have_text("jobs per minute")


def test_the_throughput_chart_of_a_queue_with_pushes_alone_says_nothing_finished(
    server: Server, page: Any, queue: str
) -> None:
    for _ in range(3):
        push(server.client, queue, data=1)
    page.goto(f"{server.url}/#/queue/{queue}")
    playwright_api.expect(page.get_by_text("No finished jobs in this range.")).to_be_visible()
    playwright_api.expect(page.get_by_test_id("metrics-chart")).to_have_count(0)


def test_the_last_hour_column_says_what_it_counts(server: Server, page: Any, queue: str) -> None:
    c = server.client
    complete(c, queue, data=1)
    for _ in range(4):
        push(c, queue, data=1)
    page.goto(server.url + "/")
    playwright_api.expect(count(page, queue, "waiting")).to_have_text("4")
    header = page.get_by_test_id("queues").locator("th", has_text="finished")
    playwright_api.expect(header).to_have_text("Pushed and finished, last hour")
    cell = page.get_by_test_id(f"spark-{queue}")
    # Five pushes (the completed job's and four waiting), one finish: two lines.
    playwright_api.expect(cell).to_contain_text("5 pushed · 1 finished")
    playwright_api.expect(cell.locator("polyline.pushed")).to_have_count(1)
    playwright_api.expect(cell.locator("polyline.finished")).to_have_count(1)
    title = cell.get_attribute("title") or ""
    assert "5 jobs pushed" in title and "4 are waiting" in title, title


def test_a_notice_does_not_cover_the_button_it_reports_on(
    server: Server, page: Any, queue: str
) -> None:
    job = push(server.client, queue, data={"a": 1})
    page.goto(f"{server.url}/#/job/{queue}/{job}")
    save = page.get_by_role("button", name="Save")
    playwright_api.expect(save).to_be_visible()
    # The Save button at the bottom right of the window, where notices appear by default.
    save.evaluate("e => e.scrollIntoView({block: 'end', inline: 'end'})")
    save.click()
    toast = page.get_by_test_id("toast")
    playwright_api.expect(toast).to_contain_text("Save: done")
    # Both boxes read in one script: the save's reload (and job events) re-render the
    # view and replace the button at any moment, so two separate reads could straddle it.
    t, b = page.evaluate(
        """() => {
          const box = (e) => { const r = e.getBoundingClientRect();
            return { x: r.x, y: r.y, width: r.width, height: r.height }; };
          const buttons = [...document.querySelectorAll("button")];
          const save = buttons.find((e) => e.textContent === "Save");
          return [box(document.querySelector("[data-testid=toast]")), box(save)];
        }"""
    )
    apart = (
        t["x"] + t["width"] <= b["x"]
        or b["x"] + b["width"] <= t["x"]
        or t["y"] + t["height"] <= b["y"]
        or b["y"] + b["height"] <= t["y"]
    )
    assert apart, (t, b)
    assert t["y"] >= 0 and t["y"] + t["height"] <= 860
    shot(page, "notice")


def each_theme_and_width(browser: Any) -> Iterator[tuple[Any, str, str]]:
    """A fresh page per theme (light, dark) and width (1366, 420 px), with the theme and
    the screenshot's name suffix; each page is closed once the caller is done with it."""
    for theme in ("light", "dark"):
        for width in (1366, 420):
            pg = new_page(browser, width=width, theme=theme)
            try:
                yield pg, theme, theme + ("-narrow" if width == 420 else "")
            finally:
                pg.context.close()


def test_screenshots_of_every_view_in_both_themes(server: Server, browser: Any) -> None:
    c = server.client
    queue = "emails"
    for i in range(3):
        complete(c, queue, data={"to": f"done{i}@example.com"}, name="welcome")
    failed = fail_for_good(c, queue, "smtp timeout")
    for i in range(4):
        push(c, queue, data={"to": f"user{i}@example.com"}, name="welcome")
    for pg, theme, suffix in each_theme_and_width(browser):
        pg.goto(server.url + "/")
        playwright_api.expect(count(pg, queue, "waiting")).to_have_text("4")
        assert pg.evaluate("document.documentElement.dataset.theme") == theme
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        rows = pg.get_by_test_id("queues").locator("tbody tr").count()
        playwright_api.expect(pg.get_by_test_id("queue-count")).to_have_text(
            f"{rows} {'queue' if rows == 1 else 'queues'} · counts update live"
        )
        shot(pg, f"view-overview-{suffix}")
        pg.goto(f"{server.url}/#/queue/{queue}")
        playwright_api.expect(pg.get_by_test_id("metrics-chart")).to_be_visible()
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        assert pg.evaluate(WRAPPED_JOB_LINKS) == []
        shot(pg, f"view-queue-{suffix}")
        pg.goto(f"{server.url}/#/job/{queue}/{failed}")
        playwright_api.expect(pg.get_by_test_id("job-error")).to_have_text("smtp timeout")
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        shot(pg, f"view-job-{suffix}")
        pg.goto(f"{server.url}/#/search?q=user1")
        pg.get_by_test_id("payload-results").locator("xpath=..").locator("select").select_option(
            queue
        )
        playwright_api.expect(pg.get_by_test_id("payload-results")).to_contain_text(
            "user1@example.com"
        )
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        # ids stay on one line (their table scrolls), as in the queue view
        assert pg.evaluate(WRAPPED_JOB_LINKS) == []
        shot(pg, f"view-search-{suffix}")
        pg.goto(f"{server.url}/#/search?q={failed}")
        playwright_api.expect(pg.get_by_test_id("id-result")).to_contain_text(queue)
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        shot(pg, f"view-search-id-{suffix}")
        assert pg.evaluate(WRAPPED_JOB_LINKS) == [], suffix
        pg.goto(f"{server.url}/#/queue/{queue}")
        pg.get_by_test_id("drain").click()
        playwright_api.expect(pg.locator("#confirm-dialog")).to_be_visible()
        shot(pg, f"view-confirm-{suffix}")
        pg.get_by_test_id("confirm-cancel").click()


def test_screenshots_of_sign_in_read_only_notice_and_error_in_both_themes(
    server: Server, start_server: Any, browser: Any
) -> None:
    """The dialogs, banners and messages that the views' screenshots do not show: the
    sign-in dialog (a first visit, then a refused token), the read-only banner, a notice,
    and the page for a view that could not load."""
    authed = start_server(AUTH_TOKENS="right-token")
    read_only = start_server(HOPPER_DASHBOARD_READ_ONLY="1")
    fail_for_good(read_only.client, "ro", "nope")
    queue = "notices"
    job = push(server.client, queue, data={"a": 1})
    for pg, theme, suffix in each_theme_and_width(browser):
        pg.goto(authed.url + "/")
        dialog = pg.locator("#auth-dialog")
        playwright_api.expect(dialog).to_be_visible()
        playwright_api.expect(pg.locator("#auth-message")).to_contain_text(
            "requires a bearer token"
        )
        assert pg.evaluate("document.documentElement.dataset.theme") == theme
        playwright_api.expect(pg.locator("#live-text")).to_have_text("signed out")
        field = pg.locator("#auth-token").bounding_box()
        button = pg.get_by_role("button", name="Sign in").bounding_box()
        assert button["y"] - (field["y"] + field["height"]) >= 8, (field, button)
        shot(pg, f"view-auth-first-visit-{suffix}")
        pg.locator("#auth-token").fill("wrong-token")
        pg.get_by_role("button", name="Sign in").click()
        playwright_api.expect(pg.locator("#auth-message")).to_contain_text("refused")
        playwright_api.expect(dialog).to_be_visible()
        shot(pg, f"view-auth-prompt-{suffix}")

        pg.goto(read_only.url + "/#/queue/ro?state=failed")
        playwright_api.expect(pg.locator("#ro-banner")).to_be_visible()
        playwright_api.expect(pg.get_by_test_id("queue-title")).to_contain_text("ro")
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        shot(pg, f"view-read-only-{suffix}")

        pg.goto(f"{server.url}/#/job/{queue}/no-such-job")
        playwright_api.expect(
            pg.get_by_role("heading", name="Could not load this view")
        ).to_be_visible()
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        shot(pg, f"view-error-{suffix}")

        pg.goto(f"{server.url}/#/job/{queue}/{job}")
        pg.get_by_role("button", name="Save").click()
        playwright_api.expect(pg.get_by_test_id("toast")).to_contain_text("Save: done")
        assert pg.evaluate(NO_PAGE_OVERFLOW)
        # a full-page shot of a scrolled page draws the sticky header mid-page
        pg.evaluate("scrollTo(0, 0)")
        shot(pg, f"view-notice-{suffix}")
