"""Durable (SQLite) and in-memory buffers between the core and each sink; see docs/buffer.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge_agent.buffer.base import Buffer, Tx
from edge_agent.core.channel import WhenFull

__all__ = ["Buffer", "Tx", "open_buffer"]


def open_buffer(
    kind: str,
    path: Path | None,
    max_bytes: int,
    when_full: WhenFull | str,
    fsync: str = "normal",
    on_drop: Callable[[int, str], None] | None = None,
) -> Buffer:
    """Open the buffer of one sink: ``sqlite`` (durable, at ``path``) or ``memory`` (``path`` and
    ``fsync`` unused). Raises :class:`edge_agent.errors.BufferCorrupt` for an unreadable store."""
    when_full = WhenFull(when_full)
    if kind == "sqlite":
        if path is None:
            raise ValueError("a sqlite buffer needs a path")
        from edge_agent.buffer.sqlite import SqliteBuffer

        return SqliteBuffer(Path(path), max_bytes, when_full, fsync=fsync, on_drop=on_drop)
    if kind == "memory":
        from edge_agent.buffer.memory import MemoryBuffer

        return MemoryBuffer(max_bytes, when_full, on_drop=on_drop)
    raise ValueError(f"unknown buffer kind {kind!r} (sqlite | memory)")
