"""Who may make a request: the rate limit per client address and the bearer tokens,
shared by every API and transport (each API decides which routes they apply to)."""

from __future__ import annotations

import time

from hopper.server.auth import TokenCheck
from hopper.server.http import Request
from hopper.server.rate_limit import RateLimiter, client_key


class Admission:
    def __init__(self, tokens: TokenCheck, limiter: RateLimiter) -> None:
        self.tokens = tokens
        self.limiter = limiter
        # Neither a rate limit nor auth configured: nothing to check.
        self.open = not limiter.enabled and not tokens.enabled

    def over_limit(self, req: Request) -> bool:
        """Counts the request against its client's budget; True when it is spent."""
        if not self.limiter.enabled:
            return False
        key = client_key(req.header("x-forwarded-for"), req.header("x-real-ip"))
        return not self.limiter.allow(key, time.monotonic_ns() // 1_000_000)

    def bearer_ok(self, req: Request) -> bool:
        return self.tokens.header_ok(req.header("authorization"))
