"""`GET /api/cluster`: the brokers of a cluster (`--postgres-url`, docs/cluster.md) and
who owns each slot, or this one server outside cluster mode, so the dashboard always has
something to show. The Conveyor dashboard API has no such view: a hopper extension.

In cluster mode every broker's front relays to the slot owner, so the owner's app
answers, whichever broker the client reached (`servedBy`)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from hopper._engine import cluster_view
from hopper.errors import UnavailableError
from hopper.server.config import host_port
from hopper.server.http import HttpError, Request, Response
from hopper.server.management import shapes
from hopper.server.management.api import data
from hopper.server.management.schemas import data_of, ref
from hopper.server.router import Doc

if TYPE_CHECKING:
    from hopper.server.management.api import Management

# A database that does not answer within this is reported unavailable: a dashboard's
# refresh never hangs on an unreachable PostgreSQL.
VIEW_TIMEOUT_S = 5.0
# The dashboard's overview is redrawn for job events, several times a second on a busy
# server: views younger than this are answered again instead of each opening a connection.
VIEW_REUSE_S = 1.0


def register(api: Management) -> None:
    state = api.state
    config = state.config
    last: list[tuple[float, dict[str, Any]]] = []  # (when read, monotonic; the view)

    async def cluster(_req: Request) -> Response:
        if not config.postgres_url:
            return data(
                shapes.single_server(
                    config.broker_name(),
                    host_port(config.host, config.port),
                    host_port(config.host, config.tcp_port),
                    int(state.started * 1000),
                    int(time.time() * 1000),
                )
            )
        if last and time.monotonic() - last[0][0] < VIEW_REUSE_S:
            return data(last[0][1])
        # One short connection of its own, blocking: off the event loop.
        read = asyncio.to_thread(cluster_view, config.postgres_url, config.namespace)
        try:
            view = shapes.cluster(
                await asyncio.wait_for(read, VIEW_TIMEOUT_S), config.namespace, config.broker_name()
            )
        except UnavailableError as e:
            raise HttpError(
                503, f"Cannot read the cluster from PostgreSQL: {e}", "UNAVAILABLE"
            ) from None
        except asyncio.TimeoutError:
            raise HttpError(
                503, "PostgreSQL did not answer the cluster view in time", "UNAVAILABLE"
            ) from None
        last[:] = [(time.monotonic(), view)]
        return data(view)

    api.add(
        "GET",
        "/cluster",
        cluster,
        Doc(
            "The cluster's brokers (live or stale by the database's clock) and each slot's "
            "owner, epoch and lease left; outside cluster mode this one server (extension)",
            "Cluster",
            data_of(ref("Cluster")),
            errors=(401, 429, 503),
        ),
    )
