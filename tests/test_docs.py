"""The documentation says what the server does: every server option, every management
API route and queue-summary field is documented, and the docs speak of the product and
its public references only."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hopper.server.app import HopperApp
from hopper.server.config import ServerConfig
from hopper.server.management.schemas import COMPONENTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "bench" / "README.md"]


def test_every_server_option_is_in_the_configuration_doc() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = []
    for f in dataclasses.fields(ServerConfig):
        m = f.metadata
        for name in (m["flag"], *m["aliases"], *m["env"]):
            if f"`{name}`" not in doc:
                missing.append(f"{f.name}: {name}")
    assert not missing, missing


@pytest.fixture(scope="module")
def management_routes() -> list[tuple[str, str]]:
    app = HopperApp(ServerConfig(memory=True))
    try:
        return [(r.method, r.path) for r in app.management.router.routes()]
    finally:
        app.engine.close()


def test_every_management_route_is_in_its_doc(management_routes: list[tuple[str, str]]) -> None:
    doc = (ROOT / "docs" / "management-api.md").read_text()
    missing = []
    for method, path in management_routes:
        # A row names the route in full, or as a sibling of the one before: `/resume`.
        if f"`{method} {path}" not in doc and f"`/{path.rsplit('/', 1)[-1]}`" not in doc:
            missing.append(f"{method} {path}")
    assert not missing, missing


def test_every_queue_summary_field_is_in_the_management_doc() -> None:
    doc = (ROOT / "docs" / "management-api.md").read_text()
    summary = doc.split("**Queue summary**", 1)[1].split("- **Job**", 1)[0]
    fields = COMPONENTS["QueueSummary"]["properties"]
    missing = [name for name in fields if not re.search(rf"\b{name}\b", summary)]
    assert not missing, missing


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_docs_name_only_public_things(path: Path) -> None:
    """No paths or notes a reader of the product cannot see."""
    text = path.read_text()
    for pattern in (
        r"\.\./shared/",
        r"/work/",
        r"\bseeds?\b",
        r"\bseed-\d",
        r"\b00[01]_",
        r"\bthe issue\b",
        r"\bthe page's\b",
        r"\bon the page\b",
        # A tracker's issue numbers mean nothing to a reader of the product.
        r"\bissues?\s*#?\s*\d+",
    ):
        found = re.search(pattern, text, re.IGNORECASE)
        assert found is None, (
            f"{path.name}: {found and text[max(0, found.start() - 60) : found.end() + 60]!r}"
        )
