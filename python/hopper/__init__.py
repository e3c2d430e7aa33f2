"""hopper: a job-queue engine in Rust with a Python API.

`hopper.Engine` runs the engine in-process; the job server and the management API are
served from the same engine (see the README). `hopper.Client`, `hopper.AsyncClient`,
`hopper.Producer` and `hopper.Worker` talk to a job server (docs/client.md); they are
imported on first use, so the engine alone does not load httpx and websockets.
"""

from typing import TYPE_CHECKING, Any

from hopper._engine import __version__
from hopper.engine import (
    ChildFailurePolicy,
    ChildrenValues,
    DlqConfig,
    Engine,
    FlowJob,
    GroupRateLimit,
    LogEntry,
    LogLevel,
    QueueLimits,
    RateLimit,
    SchedulerInfo,
    SchedulerJobOptions,
    SearchType,
    StallConfig,
    WorkerInfo,
)
from hopper.errors import (
    HopperError,
    InvalidInputError,
    InvalidStateError,
    LockError,
    NotFoundError,
    UnavailableError,
)
from hopper.job import Job, State

if TYPE_CHECKING:
    from hopper.client import (
        ActiveJob,
        AsyncClient,
        AuthError,
        Client,
        ClientError,
        Producer,
        Worker,
        WsChannel,
    )

_CLIENT_NAMES = frozenset(
    (
        "ActiveJob",
        "AsyncClient",
        "AuthError",
        "Client",
        "ClientError",
        "Producer",
        "Worker",
        "WsChannel",
    )
)


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        import hopper.client

        value = getattr(hopper.client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hopper' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, the lazily imported client ones included (not `Any`)."""
    return sorted(__all__)


__all__ = [
    "ActiveJob",
    "AsyncClient",
    "AuthError",
    "ChildFailurePolicy",
    "ChildrenValues",
    "Client",
    "ClientError",
    "DlqConfig",
    "Engine",
    "FlowJob",
    "GroupRateLimit",
    "HopperError",
    "InvalidInputError",
    "InvalidStateError",
    "Job",
    "LockError",
    "LogEntry",
    "LogLevel",
    "NotFoundError",
    "Producer",
    "QueueLimits",
    "RateLimit",
    "SchedulerInfo",
    "SchedulerJobOptions",
    "SearchType",
    "StallConfig",
    "State",
    "UnavailableError",
    "Worker",
    "WorkerInfo",
    "WsChannel",
    "__version__",
]
