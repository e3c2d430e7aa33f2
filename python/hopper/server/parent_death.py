"""Processes of a broker that must not outlive their parent: an engine owning a cluster
slot keeps renewing its lease while it runs, so a broker that was killed would leave its
slots served by orphans nobody routes to, and never taken over."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """SIGTERM to this process when its parent exits (Linux's PR_SET_PDEATHSIG). If the
    parent (`parent`, else the current one) is already gone, SIGTERM now."""
    expected = os.getppid() if parent is None else parent
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != expected:
        os.kill(os.getpid(), signal.SIGTERM)
