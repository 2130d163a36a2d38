"""Process memory tuning for gateways with 1-4 GB of RAM.

glibc's malloc raises its mmap threshold dynamically after large blocks are freed; the
multi-megabyte numpy arrays and buffers that pass through the agent then land in per-thread heap
arenas and fragment them, so RSS grew to ~2x what the data needed (measured with
``bench/core_throughput.py``: 536 MB -> 306 MB peak at 10,000 signals with a fixed threshold).
A fixed threshold returns large blocks to the OS when freed; two arenas are plenty for our few
threads. The threshold is 1 MiB, not glibc's initial 128 KiB: the per-batch arrays of 100-800 kB
(chunk columns, sort orders, row segments) then reuse heap memory instead of being mapped and
page-faulted afresh each time (5x fewer page faults, +20-40 % core throughput, +10-25 MB RSS). Users can still override with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_ARENA_MAX``.

Arrow allocates from its own pool, mimalloc in the pyarrow wheels, which keeps freed pages
cached for reuse: 60-80 MB of RSS in the same benchmark (Parquet encoder buffers, IPC blobs of
the SQLite buffer). The agent switches Arrow to the system allocator, so the glibc settings above
apply to Arrow too; ``ARROW_DEFAULT_MEMORY_POOL`` set by the user wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_malloc(mmap_threshold: int = 1024 * 1024, arena_max: int = 2) -> bool:
    """Apply the settings once per process; False where glibc is not available."""
    ok = _tune_glibc(mmap_threshold, arena_max)
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ and ok:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
    return ok


_libc = None


def trim() -> bool:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``): freed blocks in the middle of
    the heap are not returned otherwise. Cheap enough after each sink commit; False without glibc."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
            _libc and _libc.malloc_trim  # noqa: B018 - musl has no malloc_trim
        except (OSError, AttributeError):
            _libc = False
    return bool(_libc) and bool(_libc.malloc_trim(0))


def _tune_glibc(mmap_threshold: int, arena_max: int) -> bool:
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
