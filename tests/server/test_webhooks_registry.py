"""The webhook registry's stores without a server: a cluster's table that cannot be
written refuses the change and keeps the registry as it was; a refresh keeps the
counters of the webhooks it keeps and is not applied over a change made since it began.
(Delivery through a cluster's table: tests/test_cluster_webhooks.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Any, cast

import pytest
from hopper.engine import Engine
from hopper.server.config import ServerConfig
from hopper.server.events import EventHub
from hopper.server.webhooks import ClusterRegistry, FileRegistry, Webhook, WebhookError, Webhooks

URL = "https://example.com/hook"


def unreachable_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://hopper@127.0.0.1:{port}/hopper"


def webhooks(**config: Any) -> Webhooks:
    """Webhooks that are never started: no hub or engine is used."""
    return Webhooks(
        dataclasses.replace(ServerConfig(), memory=True, **config),
        cast(EventHub, None),
        cast(Engine, None),
    )


def test_a_failed_write_to_the_table_changes_nothing() -> None:
    hooks = webhooks(postgres_url=unreachable_url(), namespace="registry-test")
    assert isinstance(hooks.registry, ClusterRegistry)
    kept = Webhook(id="k", url=URL, events=["job.pushed"], queue=None, secret=None, created_at=1)
    hooks.hooks = {"k": kept}
    for change in (
        hooks.add(URL, ["job.pushed"], None, None),
        hooks.remove("k"),
        hooks.set_enabled("k", False),
    ):
        with pytest.raises(WebhookError, match=r"^Cannot save webhooks: PostgreSQL: "):
            asyncio.run(change)
    assert hooks.hooks == {"k": kept} and kept.enabled


def test_a_refresh_keeps_counters_and_yields_to_a_newer_change() -> None:
    hooks = webhooks()
    assert isinstance(hooks.registry, FileRegistry)
    old = asyncio.run(hooks.add(URL, ["job.pushed"], None, None))
    old.success_count, old.last_triggered = 3, 42
    stored = Webhook.from_stored({**old.stored(), "enabled": False})
    other = Webhook.from_stored({**old.stored(), "id": "other", "createdAt": 0})
    generation = hooks._generation
    hooks._refreshed([other, stored], generation)
    assert list(hooks.hooks) == ["other", old.id]
    assert hooks.hooks[old.id] is old
    assert (old.enabled, old.success_count, old.last_triggered) == (False, 3, 42)
    # A read that began before a change made here is not applied.
    generation = hooks._generation
    assert asyncio.run(hooks.remove("other"))
    hooks._refreshed([], generation)
    assert list(hooks.hooks) == [old.id]
