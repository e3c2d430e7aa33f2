"""The exceptions hopper raises. Every one is a subclass of `HopperError`."""

from hopper._engine import (
    HopperError,
    InvalidInputError,
    InvalidStateError,
    LockError,
    NotFoundError,
    UnavailableError,
)

__all__ = [
    "HopperError",
    "InvalidInputError",
    "InvalidStateError",
    "LockError",
    "NotFoundError",
    "UnavailableError",
]
