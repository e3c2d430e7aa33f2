"""The job a worker holds after a pull, and the names of the states a job can be in."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from hopper._engine import STATES as ENGINE_STATES

State = Literal["waiting", "waiting-children", "delayed", "active", "completed", "failed"]
# The engine's names, in its display order; `State` spells the same for type checkers
# (tests/test_engine_api.py checks that the two agree).
STATES: tuple[State, ...] = ENGINE_STATES  # type: ignore[assignment]


class Job(NamedTuple):
    """A leased job. `token` proves the lease when acking or failing it.

    A named tuple because workers create one per job: it is immutable and cheap to build.
    """

    id: str
    queue: str
    name: str
    data: Any
    token: str
    priority: int
    attempts: int
    max_attempts: int
    created_at: int
