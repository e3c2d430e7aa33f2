"""Process memory as the job server reports it (MB, like the reference): RSS from
/proc, and the native heap: what the engine's allocator (mimalloc) has committed plus
glibc's heap (Python's large objects) from mallinfo2. Also the debug views behind /gc
and /heapstats."""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import os
import sys

from hopper._engine import allocator_committed, allocator_release

MB = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL | None:
    path = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(path) if path else None
    except OSError:
        return None


_LIBC = _libc()
_HAS_MALLINFO2 = _LIBC is not None and hasattr(_LIBC, "mallinfo2")
if _HAS_MALLINFO2 and _LIBC is not None:
    _LIBC.mallinfo2.restype = _MallInfo2


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def heap_bytes() -> tuple[int, int]:
    """(in use, total) bytes of the native heap: the engine's committed memory, plus
    glibc's heap where mallinfo2 exists."""
    engine, _ = allocator_committed()
    if not _HAS_MALLINFO2 or _LIBC is None:
        return engine, engine
    info = _LIBC.mallinfo2()
    return engine + info.uordblks + info.hblkhd, engine + info.arena + info.hblkhd


def memory_mb() -> dict[str, int]:
    used, total = heap_bytes()
    return {
        "heapUsed": round(used / MB),
        "heapTotal": round(total / MB),
        "rss": round(rss_bytes() / MB),
    }


def collect() -> tuple[dict[str, int], dict[str, int]]:
    """Runs a full GC and returns heap memory to the OS; (before, after) in MB."""
    before = memory_mb()
    gc.collect()
    allocator_release()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
    return before, memory_mb()


def heap_objects() -> tuple[dict[str, int], list[dict[str, object]]]:
    """Counts of Python objects tracked by the GC, and the 20 most common types."""
    objects = gc.get_objects()
    by_type = collections.Counter(type(o).__name__ for o in objects)
    heap = {
        "objectCount": len(objects),
        "protectedCount": len(gc.garbage),
        "globalCount": len(sys.modules),
    }
    top = [{"type": t, "count": n} for t, n in by_type.most_common(20)]
    return heap, top
