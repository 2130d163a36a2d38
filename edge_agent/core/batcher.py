"""The batch policy: a plain object with an injected clock and no I/O (Benthos ``policy.go``).

``add(chunk) -> bool`` says whether the batch should be flushed now (rows or bytes reached);
``until_next()`` says how long until the age limit forces a flush; ``flush()`` returns the
batch as one Arrow record batch plus the reason and the chunks' durability callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from edge_agent.core.chunk import SampleChunk, chunks_to_batch


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_rows: int = 50_000
    max_bytes: int = 8 * 1024 * 1024
    max_age_secs: float = 1.0


@dataclass(slots=True)
class Flushed:
    batch: pa.RecordBatch
    reason: str  # rows | bytes | age | shutdown
    callbacks: list[Callable[[], None]]


class Batcher:
    def __init__(self, policy: BatchPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._chunks: list[SampleChunk] = []
        self._rows = 0
        self._bytes = 0
        self._started: float | None = None

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, chunk: SampleChunk) -> bool:
        """Add a chunk; True when the batch is full (by rows or bytes) and should be flushed."""
        if len(chunk) == 0 and chunk.on_durable is None:
            return self._full() is not None
        if self._started is None:
            self._started = self._clock()
        self._chunks.append(chunk)
        self._rows += len(chunk)
        self._bytes += chunk.nbytes
        return self._full() is not None

    def _full(self) -> str | None:
        if self._rows >= self.policy.max_rows:
            return "rows"
        if self._bytes >= self.policy.max_bytes:
            return "bytes"
        return None

    def until_next(self) -> float | None:
        """Seconds until the age limit forces a flush; ``None`` when the batch is empty."""
        if self._started is None:
            return None
        return max(0.0, self._started + self.policy.max_age_secs - self._clock())

    def due(self) -> str | None:
        """The reason a flush is due now, or ``None``."""
        full = self._full()
        if full:
            return full
        left = self.until_next()
        if left is not None and left <= 0.0:
            return "age"
        return None

    def flush(self, reason: str | None = None) -> Flushed | None:
        """Take the batch (``None`` when empty)."""
        if not self._chunks:
            return None
        chunks = self._chunks
        callbacks = [c.on_durable for c in chunks if c.on_durable is not None]
        batch = chunks_to_batch(chunks)
        why = reason or self.due() or "age"
        self._chunks = []
        self._rows = 0
        self._bytes = 0
        self._started = None
        return Flushed(batch=batch, reason=why, callbacks=callbacks)
