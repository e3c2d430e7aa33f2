"""Bearer-token checks, in constant time per configured token."""

from __future__ import annotations

import hmac


class TokenCheck:
    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = tuple(t.encode() for t in tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def token_ok(self, token: bytes) -> bool:
        """Compares against every token (no early exit), each in constant time."""
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(known, token)
        return matched

    def header_ok(self, authorization: bytes | None) -> bool:
        """`Authorization: Bearer <token>`; always true when auth is off."""
        if not self._tokens:
            return True
        if authorization is None:
            return False
        scheme, _, token = authorization.strip().partition(b" ")
        return scheme.lower() == b"bearer" and self.token_ok(token.strip())
