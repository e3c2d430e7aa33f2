"""What the browser tests share: Debian's Chromium (driven by Playwright from PyPI, the
`browser` fixture in conftest.py) and screenshots under test-artifacts/screenshots/.

Without Chromium the browser tests are skipped with the reason, unless
HOPPER_REQUIRE_BROWSER=1 (`.ci/run` sets it after installing Chromium), where a missing
browser is a failure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 10_000


def launch_chromium() -> Iterator[Any]:
    """A headless Chromium for one module's tests, closed after them."""
    if CHROMIUM is None:
        if os.environ.get("HOPPER_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (HOPPER_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
