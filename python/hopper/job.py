"""The job a worker holds after a pull."""

from __future__ import annotations

from typing import Any, NamedTuple


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
