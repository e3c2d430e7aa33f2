"""`GET /api/workers`: the workers registry (workers register over the TCP protocol and
stay listed while their connection is open). The reference serves the same path, off its
documented page; hopper lists it in `/openapi.json` as an extension."""

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

    async def list_workers(req: Request) -> Response:
        queue = req.query.get("queue") or None
        if queue is not None and not api.visible(queue):
            raise not_found(f'Queue "{queue}" not found')
        now = engine.now_ms()
        listed = []
        for w in engine.workers():
            # The allow-list hides the queues it does not name, and a worker of none.
            queues = [q for q in w.queues if api.visible(q)]
            if (api.allow and not queues) or (queue is not None and queue not in queues):
                continue
            listed.append(shapes.worker(w._replace(queues=queues), now))
        return data(listed)

    api.add(
        "GET",
        "/workers",
        list_workers,
        Doc(
            "Registered workers, oldest registration first, with a status by heartbeat "
            "age: live under 10 s, warning under 30 s, else stale (extension)",
            "Workers",
            data_of({"type": "array", "items": ref("Worker")}),
            query=(Param("queue", {"type": "string"}, "only the workers of this queue"),),
            errors=(401, 404, 429),
        ),
    )
