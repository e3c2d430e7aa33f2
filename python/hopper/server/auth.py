"""Bearer-token checks, in constant time per configured token."""

from __future__ import annotations

import hmac


class TokenCheck:
    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = tuple(t.encode() for t in tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def token_ok(self, raw: bytes) -> bool:
        """Compares against every token (no early exit), each in constant time."""
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(known, raw)
        return matched

    def header_ok(self, authorization: str | None) -> bool:
        """`Authorization: Bearer <token>`; always true when auth is off."""
        if not self._tokens:
            return True
        if authorization is None:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(header_bytes(token.strip()))


def header_bytes(value: str) -> bytes:
    """A header value's bytes as sent: the ASGI adapter decodes them as latin-1."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()
