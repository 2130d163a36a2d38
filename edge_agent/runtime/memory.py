"""Process memory tuning for gateways with 1-4 GB of RAM.

glibc's malloc raises its mmap threshold dynamically after large blocks are freed; the
multi-megabyte Arrow IPC blobs and Parquet buffers that pass through the agent then land in
per-thread heap arenas and fragment them, so RSS grew to ~2x what the data needed (measured with
``bench/core_throughput.py``: 536 MB -> 306 MB peak at 10,000 signals with a fixed threshold).
A fixed 128 KiB threshold returns large blocks to the OS when freed; two arenas are plenty for
our few threads. Users can still override with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_ARENA_MAX``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_malloc(mmap_threshold: int = 128 * 1024, arena_max: int = 2) -> bool:
    """Apply the settings once per process; False where glibc is not available."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl (Alpine) and others: nothing to tune
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok &= bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
    if "MALLOC_ARENA_MAX" not in os.environ:
        ok &= bool(mallopt(M_ARENA_MAX, arena_max))
    return ok
