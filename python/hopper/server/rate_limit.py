"""Per-client sliding-window rate limit (the sliding-window-counter method: this
window's count plus the previous window's, weighted by how much of it still overlaps).
Memory is one small entry per active client; idle entries are dropped every cleanup
interval."""

from __future__ import annotations

import math


class RateLimiter:
    def __init__(self, window_ms: int, max_requests: float, cleanup_ms: int) -> None:
        self.window = window_ms / 1000
        self.max_requests = max_requests
        self.cleanup_every = cleanup_ms / 1000
        # client → [window start, count in this window, count in the previous window]
        self._clients: dict[str, list[float]] = {}
        self._next_cleanup = 0.0

    @property
    def enabled(self) -> bool:
        return math.isfinite(self.max_requests)

    def allow(self, client: str, now: float) -> bool:
        if not self.enabled:
            return True
        if now >= self._next_cleanup:
            self._cleanup(now)
        entry = self._clients.get(client)
        if entry is None:
            entry = self._clients[client] = [now - now % self.window, 0.0, 0.0]
        start = now - now % self.window
        if start != entry[0]:
            # Moved on: the previous window is the one just ended, or empty if older.
            entry[2] = entry[1] if start - entry[0] == self.window else 0.0
            entry[0], entry[1] = start, 0.0
        overlap = 1 - (now - start) / self.window
        if entry[1] + entry[2] * overlap >= self.max_requests:
            return False
        entry[1] += 1
        return True

    def _cleanup(self, now: float) -> None:
        self._next_cleanup = now + self.cleanup_every
        horizon = now - 2 * self.window
        for client in [c for c, e in self._clients.items() if e[0] < horizon]:
            del self._clients[client]

    def __len__(self) -> int:
        return len(self._clients)


def client_key(forwarded_for: bytes | None, real_ip: bytes | None) -> str:
    """The first X-Forwarded-For address, else X-Real-IP, else "unknown" (as the
    reference server does)."""
    if forwarded_for:
        first = forwarded_for.split(b",", 1)[0].strip()
        if first:
            return first.decode("latin-1")
    if real_ip and real_ip.strip():
        return real_ip.strip().decode("latin-1")
    return "unknown"
