"""The job server's API (bunqueue's HTTP API): its `{ok:false,error}` envelope and its
admission policy (the rate limit on limited routes, the bearer token where a route needs
it), over the route table the `routes` modules fill."""

from __future__ import annotations

import orjson

from hopper.server.admission import Admission
from hopper.server.http import HttpError, Request, Response
from hopper.server.pipeline import Api
from hopper.server.router import Auth, Route


class JobServerApi(Api):
    preflight = Response(
        204,
        b"",
        headers=[
            ("access-control-allow-methods", "GET, POST, PUT, DELETE, OPTIONS"),
            ("access-control-allow-headers", "Content-Type, Authorization"),
            ("access-control-max-age", "86400"),
        ],
    )

    def __init__(self, admission: Admission, metrics_auth: bool) -> None:
        super().__init__()
        self.admission = admission
        self.metrics_auth = metrics_auth

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return Response(status, orjson.dumps({"ok": False, "error": message}))

    def admit(self, req: Request, route: Route | None) -> None:
        """Rate limit first (so rejected requests count too), then auth. An unknown
        route is a 404 before either."""
        if route is None or self.admission.open:
            return
        if route.rate_limited and self.admission.over_limit(req):
            raise HttpError(429, "Rate limit exceeded")
        if not self.admission.tokens.enabled:
            return
        needs_auth = route.auth is Auth.REQUIRED or (
            route.auth is Auth.METRICS and self.metrics_auth
        )
        if needs_auth and not self.admission.bearer_ok(req):
            raise HttpError(401, "Unauthorized")
