"""The job a worker holds after a pull."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Job:
    """A leased job. `token` proves the lease when acking or failing it."""

    id: str
    queue: str
    name: str
    data: Any
    token: str
    priority: int
    attempts: int
    max_attempts: int
    created_at: int
