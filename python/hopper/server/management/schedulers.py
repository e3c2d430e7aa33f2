"""`GET /api/schedulers`: the named job schedulers (bunqueue's crons, created over the TCP
protocol's `Cron` or `Engine.upsert_scheduler`). The reference's page has no such view;
hopper lists it in `/openapi.json` as an extension."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hopper.server.http import Request, Response
from hopper.server.management import shapes
from hopper.server.management.api import data, not_found
from hopper.server.management.schemas import data_of, ref
from hopper.server.router import Doc, Param

if TYPE_CHECKING:
    from hopper.server.management.api import Management


def register(api: Management) -> None:
    engine = api.engine

    async def list_schedulers(req: Request) -> Response:
        queue = req.query.get("queue") or None
        if queue is not None and not api.visible(queue):
            raise not_found(f'Queue "{queue}" not found')
        listed = [
            shapes.scheduler(s)
            for s in engine.schedulers()
            # The allow-list hides the schedulers of the queues it does not name.
            if api.visible(s.queue) and (queue is None or s.queue == queue)
        ]
        return data(listed)

    api.add(
        "GET",
        "/schedulers",
        list_schedulers,
        Doc(
            "Job schedulers (crons), first registration first, with their next run and "
            "executions (extension)",
            "Schedulers",
            data_of({"type": "array", "items": ref("Scheduler")}),
            query=(Param("queue", {"type": "string"}, "only the schedulers of this queue"),),
            errors=(401, 404, 429),
        ),
    )
