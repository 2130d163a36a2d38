"""Process memory tuning for gateways with 1-4 GB of RAM.

glibc's malloc raises its mmap threshold dynamically after large blocks are freed; the
multi-megabyte numpy arrays and buffers that pass through the agent then land in per-thread heap
arenas and fragment them, so RSS grew to ~2x what the data needed (measured with
``bench/core_throughput.py``: 536 MB -> 306 MB peak at 10,000 signals with a fixed threshold).
A fixed threshold returns large blocks to the OS when freed. The threshold is 1 MiB, not glibc's
initial 128 KiB: the per-batch arrays of 100-800 kB (chunk columns, sort orders, row segments)
then reuse heap memory instead of being mapped and page-faulted afresh each time (5x fewer page
faults, +20-40 % core throughput, +10-25 MB RSS). One arena: the few threads (event loop, sink
and buffer workers, Parquet encoder) reuse each other's freed heap blocks instead of each arena
keeping its own; 5-10 MB less peak RSS and no slower (glibc's per-thread caches serve the small
allocations without the arena lock). Users can override with ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_ARENA_MAX``.

Arrow allocates from its own pool, mimalloc in the pyarrow wheels, which keeps freed pages
cached for reuse. ``pa.set_memory_pool`` only changes the pool of pyarrow's Python calls;
libarrow's own default, which the Parquet encoder and the IPC compression inside C++ use, is read
from ``ARROW_DEFAULT_MEMORY_POOL`` once, when pyarrow loads. So ``axedge run`` and ``axedge demo``
call :func:`tune_process` before anything imports pyarrow: the system allocator for all of Arrow
(25 MB less peak RSS in the core benchmark, same speed), and the arena limit before numpy's BLAS
threads exist. ``ARROW_DEFAULT_MEMORY_POOL`` set by the user wins. :func:`tune_malloc` (called by
``Agent.run`` for embedders) does what can still be done once pyarrow is loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 1024 * 1024
ARENA_MAX = 1


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, arena_max: int = ARENA_MAX) -> bool:
    """Apply the settings once per process; False where glibc is not available."""
    ok = _tune_glibc(mmap_threshold, arena_max)
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ and ok:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
    return ok


def tune_process() -> None:
    """What ``axedge run`` and ``axedge demo`` do first, before pyarrow and numpy load: the system
    allocator for libarrow, then the glibc settings. Early matters for the arena limit too: a
    thread that allocated before it (numpy's BLAS threads start at import) keeps its own arena,
    and later threads are spread over the existing ones."""
    prefer_system_allocator()
    _tune_glibc(MMAP_THRESHOLD, ARENA_MAX)


def arrow_pool_name() -> str:
    """The allocator behind libarrow's default pool (``system``, ``mimalloc``, ``jemalloc``)."""
    import pyarrow as pa

    return pa.default_memory_pool().backend_name


def prefer_system_allocator() -> bool:
    """Make libarrow's default memory pool the system allocator. Call before pyarrow is imported
    (it is read once, at load); True if it took effect. A pool the user chose is kept."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ or "pyarrow" in sys.modules:
        return False
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    return True


_LIBC: ctypes.CDLL | None | bool = None  # loaded once; False where there is no glibc


def _glibc(symbol: str):
    """The glibc function ``symbol``, or None (musl on Alpine and others have no mallopt or
    malloc_trim: nothing to tune)."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    return getattr(_LIBC, symbol, None) if _LIBC else None


def trim() -> bool:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``): freed blocks in the middle of
    the heap are not returned otherwise. Cheap enough after each sink commit; False without glibc."""
    malloc_trim = _glibc("malloc_trim")
    return malloc_trim is not None and bool(malloc_trim(0))


def _tune_glibc(mmap_threshold: int, arena_max: int) -> bool:
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok &= bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
    if "MALLOC_ARENA_MAX" not in os.environ:
        ok &= bool(mallopt(M_ARENA_MAX, arena_max))
    return ok
