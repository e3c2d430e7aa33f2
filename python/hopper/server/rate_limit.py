"""Per-client sliding-window rate limit, exact: a client's admitted requests are kept as
timestamps (a sliding log), so no interval of `window_ms` ever holds more than
`max_requests` of them, at a window boundary or anywhere else. The approximate
sliding-window counter it replaces let one extra request through just after a boundary.

Memory per active client is at most `max_requests` timestamps; a client with none left
inside the window is dropped at the next cleanup. Refused requests are not recorded (a
client that keeps knocking while limited does not extend its own wait)."""

from __future__ import annotations

import math
from collections import deque


class RateLimiter:
    def __init__(self, window_ms: int, max_requests: float, cleanup_ms: int) -> None:
        self.window_ms = window_ms
        self.max_requests = max_requests
        self.cleanup_ms = cleanup_ms
        # client → times (ms) of its admitted requests still inside the window, oldest first
        self._clients: dict[str, deque[int]] = {}
        self._next_cleanup = 0

    @property
    def enabled(self) -> bool:
        return math.isfinite(self.max_requests)

    def allow(self, client: str, now_ms: int) -> bool:
        """Admits and records a request at `now_ms` (whole ms of any monotonic clock: the
        caller's, so tests can drive it; integers keep the window arithmetic exact) unless
        `max_requests` were admitted in the half-open interval (now - window, now]."""
        if not self.enabled:
            return True
        if now_ms >= self._next_cleanup:
            self._cleanup(now_ms)
        admitted = self._clients.get(client)
        if admitted is None:
            admitted = self._clients[client] = deque()
        horizon = now_ms - self.window_ms
        while admitted and admitted[0] <= horizon:
            admitted.popleft()
        if len(admitted) >= self.max_requests:
            return False
        admitted.append(now_ms)
        return True

    def _cleanup(self, now_ms: int) -> None:
        self._next_cleanup = now_ms + self.cleanup_ms
        horizon = now_ms - self.window_ms
        idle = [c for c, times in self._clients.items() if not times or times[-1] <= horizon]
        for client in idle:
            del self._clients[client]

    def __len__(self) -> int:
        return len(self._clients)


def client_key(forwarded_for: str | None, real_ip: str | None) -> str:
    """The first X-Forwarded-For address, else X-Real-IP, else "unknown" (as the
    reference server does)."""
    if forwarded_for:
        first = forwarded_for.split(",", 1)[0].strip()
        if first:
            return first
    if real_ip and real_ip.strip():
        return real_ip.strip()
    return "unknown"
