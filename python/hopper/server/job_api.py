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
        "",
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
        """Rate limit first (so rejected requests count too), then auth. A request no
        route answers (`route` None) is admitted as its path's routes are (a POST to a
        probe stays open, then gets its 405), or, for a path no route has, as a
        protected route: it counts against the limit and needs the token before it
        learns that the path does not exist, as in bunqueue."""
        if self.admission.open:
            return
        auth, limited = (route.auth, route.rate_limited) if route else self._unrouted(req.path)
        if limited and self.admission.over_limit(req):
            raise HttpError(429, "Rate limit exceeded")
        if not self.admission.tokens.enabled:
            return
        needs_auth = auth is Auth.REQUIRED or (auth is Auth.METRICS and self.metrics_auth)
        if needs_auth and not self.admission.bearer_ok(req):
            raise HttpError(401, "Unauthorized")

    def _unrouted(self, path: str) -> tuple[Auth, bool]:
        """The auth and rate-limit policy of a path's routes (those of its first method:
        one path's routes share them), or the protected policy for an unknown path."""
        for method in self.router.allowed(path):
            found = self.router.match(method, path)
            if found is not None:
                return found[0].auth, found[0].rate_limited
        return Auth.REQUIRED, True
