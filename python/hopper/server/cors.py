"""The `Access-Control-Allow-Origin` header of every response (CORS_ALLOW_ORIGIN).

One origin, or `*`, is sent as configured. A comma-separated list cannot be sent as
is (a browser accepts one origin in the header, and refuses a list), so each request is
answered with its own `Origin` when the list holds it, else with the list's first origin
(which a browser at another origin then refuses), plus `Vary: Origin` so that caches keep
the answers apart. A `*` in the list allows every origin, as `*` alone does."""

from __future__ import annotations

from hopper.server.http import Headers

ALLOW_ORIGIN = "access-control-allow-origin"


class Cors:
    def __init__(self, setting: str) -> None:
        origins = [o.strip() for o in setting.split(",") if o.strip()] or ["*"]
        if "*" in origins:
            origins = ["*"]
        # Whether every request gets the same header (no lookup of its Origin).
        self.fixed = len(origins) == 1
        vary = [] if self.fixed else [("vary", "Origin")]
        self._answers = {o: [(ALLOW_ORIGIN, o), *vary] for o in origins}
        self._default = self._answers[origins[0]]
        self._encoded = {o: _encode(h) for o, h in self._answers.items()}
        self._encoded_default = self._encoded[origins[0]]

    def headers(self, origin: str | None) -> Headers:
        """The CORS headers of a response to a request with this `Origin`."""
        if self.fixed or origin is None:
            return self._default
        return self._answers.get(origin, self._default)

    def encoded(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """`headers`, as the bytes ASGI sends (`origin` as the request carried it)."""
        if self.fixed or origin is None:
            return self._encoded_default
        return self._encoded.get(origin.decode("latin-1"), self._encoded_default)


def _encode(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
