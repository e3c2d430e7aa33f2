"""The dashboard page at `{basePath}/`: three static files shipped in the package
(`hopper/dashboard/`), read once, with the base path written into the page. A strict
Content-Security-Policy keeps the page to this server: no external requests."""

from __future__ import annotations

from importlib import resources

from hopper.server.http import Response

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


class Dashboard:
    def __init__(self, base: str) -> None:
        self.base = base  # "" or "/ops"
        files = resources.files("hopper.dashboard")
        page = files.joinpath("index.html").read_text("utf-8")
        self._index = page.replace("{{BASE}}", base).encode()
        self._assets = {name: files.joinpath(name).read_bytes() for name in TYPES}
        self._headers = [
            ("content-security-policy", CSP),
            ("x-content-type-options", "nosniff"),
            ("cache-control", "no-cache"),
        ]

    def response(self, method: str, path: str) -> Response | None:
        """The response for `path` if it is the page or one of its assets, else None."""
        if method not in ("GET", "HEAD"):
            return None
        if path == self.base + "/":
            return Response(200, self._index, "text/html; charset=utf-8", self._headers)
        if self.base and path == self.base:
            return Response(308, b"", "text/plain", [("location", self.base + "/")])
        prefix = self.base + "/assets/"
        if path.startswith(prefix) and path[len(prefix) :] in self._assets:
            name = path[len(prefix) :]
            return Response(200, self._assets[name], TYPES[name], self._headers)
        return None
