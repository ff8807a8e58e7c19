"""The C heap: keep memory a tick frees for the next tick instead of returning it to the OS.

A room tick under interest management allocates and frees a few MB of numpy temporaries
(100 clients x 600 relevant entities: arrays of ~60k rows). With glibc's defaults the freed
top of the heap is trimmed (and arrays above the adaptive mmap threshold are unmapped), so the
next tick faults the same pages in again: ~2,300 page faults a tick in benchmarks/interest.py,
6 % of its median tick and 15 % of its p99. :func:`retain_freed_memory` sets fixed thresholds
(``mallopt``): allocations below 32 MiB come from the heap, and up to 256 MiB of free heap is
kept. The price: the process keeps its peak heap (bounded by the largest tick's working set).

Operations: :func:`retain_freed_memory` (idempotent; glibc only, elsewhere a no-op returning
False). ``ASTRANET_MALLOC=system`` leaves the C library's defaults. The server calls it at
start (astranet.server.cli); benchmarks/interest.py does the same, as the server would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "retain_freed_memory"]

MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for its adaptive threshold
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_done: bool | None = None


def retain_freed_memory() -> bool:
    """Set the heap thresholds once per process; True if they are in force."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("ASTRANET_MALLOC", "") == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _done
