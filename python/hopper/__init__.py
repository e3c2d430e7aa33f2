"""hopper: a job-queue engine in Rust with a Python API.

`hopper.Engine` runs the engine in-process; the job server and the management API are
served from the same engine (see the README).
"""

from hopper._engine import __version__
from hopper.engine import Engine, SearchType, State
from hopper.errors import (
    HopperError,
    InvalidInputError,
    InvalidStateError,
    LockError,
    NotFoundError,
    UnavailableError,
)
from hopper.job import Job

__all__ = [
    "Engine",
    "HopperError",
    "InvalidInputError",
    "InvalidStateError",
    "Job",
    "LockError",
    "NotFoundError",
    "SearchType",
    "State",
    "UnavailableError",
    "__version__",
]
