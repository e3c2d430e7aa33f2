"""The two ways a soak run ends early."""

from __future__ import annotations


class Violation(Exception):
    """An invariant does not hold: what the server did contradicts what it promised."""

    def __init__(self, invariant: str, message: str) -> None:
        super().__init__(f"{invariant}: {message}")
        self.invariant = invariant
        self.message = message


class Unavailable(Exception):
    """The server could not be reached (or answered 5xx) where an answer was due."""
