"""A webhook receiver on loopback for the webhook tests (one server, and clusters): an
HTTP server recording every POST, answering with the statuses it was given."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


class Receiver:
    """An HTTP server on loopback recording every POST; answers with `statuses` in turn
    (the last one repeated)."""

    def __init__(self, statuses: tuple[int, ...] = (200,)) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with lock:
                    receiver.requests.append((headers, body))
                    status = (
                        receiver.statuses.pop(0)
                        if len(receiver.statuses) > 1
                        else (receiver.statuses[0])
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.http = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.http.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in list(self.requests)]

    def events(self, queue: str | None = None) -> list[tuple[str, str]]:
        return [
            (b["event"], b["jobId"]) for b in self.bodies() if queue is None or b["queue"] == queue
        ]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def completed(self) -> set[str]:
        """The ids of the jobs a `job.completed` delivery named."""
        return {jid for event, jid in self.events() if event == "job.completed"}
