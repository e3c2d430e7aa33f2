"""`hopper version`: this client's version and the server's, read from its HTTP
`/health` (bunqueue's CLI looks on the TCP port + 1, the default port layout)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import hopper

HEALTH_TIMEOUT_S = 3.0


def collect(host: str, http_port: int) -> dict[str, Any]:
    """{client, server: {endpoint, reachable, version?}, mismatch}."""
    server: dict[str, Any] = {"endpoint": f"{host}:{http_port}", "reachable": False}
    try:
        url = f"http://{server['endpoint']}/health"
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as resp:
            body = json.loads(resp.read())
        server["reachable"] = True
        if isinstance(body, dict) and body.get("version"):
            server["version"] = body["version"]
    except (OSError, ValueError, urllib.error.URLError):
        pass  # not reachable is an answer, not a failure
    return {
        "client": {"name": "hopper", "version": hopper.__version__},
        "server": server,
        "mismatch": "version" in server and server["version"] != hopper.__version__,
    }


def as_text(info: dict[str, Any]) -> str:
    lines = [f"Client: hopper v{info['client']['version']}"]
    server = info["server"]
    if not server["reachable"]:
        lines.append(f"Server: not reachable ({server['endpoint']})")
    elif "version" in server:
        lines.append(f"Server: v{server['version']}")
        if info["mismatch"]:
            lines += ["", "⚠ Version mismatch! Update server or client to match."]
    return "\n".join(lines)
