"""Regenerates docs/dashboard-overview.png: starts `hopper serve --memory` on a free
loopback port, gives it a few queues with realistic traffic, and screenshots the
overview in Debian's Chromium.   .venv/bin/python docs/make_screenshot.py"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hopper = str(ROOT / ".venv/bin/hopper")
    cmd = [hopper, "serve", "--memory", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        rng = random.Random(4)
        with httpx.Client(base_url=url) as c:
            reasons = ["SMTP 421: try again later", "recipient rejected", "template missing"]
            for queue, n in (
                ("emails", 400),
                ("invoices", 120),
                ("thumbnails", 260),
                ("webhooks", 80),
            ):
                jobs = [
                    {"data": {"n": i, "to": f"user{i}@example.com"}, "maxAttempts": 1}
                    for i in range(n)
                ]
                c.post(f"/queues/{queue}/jobs/bulk", json={"jobs": jobs})
                for _ in range(int(n * 0.7)):
                    r = c.get(f"/queues/{queue}/jobs").json()
                    if r["job"] is None:
                        break
                    if rng.random() < 0.08:
                        c.post(f"/jobs/{r['job']['id']}/fail", json={"error": rng.choice(reasons)})
                    elif rng.random() < 0.97:
                        c.post(f"/jobs/{r['job']['id']}/ack", json={"result": {"ok": True}})
            c.post("/queues/reports/jobs", json={"data": {"month": "2026-11"}, "delay": 3_600_000})
            c.post("/api/queues/webhooks/pause", json={})
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url + "/")
            page.get_by_test_id("count-emails-waiting").wait_for()
            page.screenshot(path=str(ROOT / "docs" / "dashboard-overview.png"))
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


if __name__ == "__main__":
    main()
