"""The durable buffer contract (store-and-forward), after Telegraf ``models/buffer.go``.

One buffer per sink. The core ``put``s Arrow record batches (in
:data:`dataset_builder.format.SAMPLE_SCHEMA`); the sink loop takes the oldest ones with
``begin`` and, once the sink has made them durable or delivered them, ``end(tx, accept=True)``
deletes them; ``end(tx, accept=False)`` puts them back at the front, in order. Nothing is
deleted before the sink confirms.

Every stored batch gets a sequence number, strictly increasing for the life of the buffer
store, and the store has a ``buffer_id`` (a UUID kept in the store). Sinks record
``(buffer_id, seq range)`` with what they commit; after a crash ``ack_through`` drops the batches
a sink had already committed, so a replay neither loses nor duplicates rows.

Implementations are synchronous and thread-safe; the runtime calls them from worker threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from edge_agent.core.channel import WhenFull


@dataclass(slots=True)
class Tx:
    """Batches handed to a sink by ``begin``; resolved once by ``end``."""

    id: int
    seqs: list[int]
    batches: list[pa.RecordBatch]
    rows: int
    nbytes: int
    done: bool = field(default=False)

    @property
    def seq_first(self) -> int:
        return self.seqs[0]

    @property
    def seq_last(self) -> int:
        return self.seqs[-1]


class Buffer(ABC):
    """Bounded by bytes with a declared ``when_full`` policy; drops reported via ``on_drop``."""

    buffer_id: str
    max_bytes: int
    when_full: WhenFull
    read_backs: int = 0  # batches ``begin`` read back from a store (only a durable buffer has one)

    def __init__(self, max_bytes: int, when_full: WhenFull, on_drop: Callable[[int, str], None] | None = None):
        self.max_bytes = int(max_bytes)
        self.when_full = WhenFull(when_full)
        self.on_drop = on_drop or (lambda rows, reason: None)

    @abstractmethod
    def put(self, batch: pa.RecordBatch) -> int | None:
        """Store ``batch`` (durably, for durable buffers) and return its sequence number.

        When the buffer is full: ``block`` raises :class:`edge_agent.errors.BufferFull` (the
        caller waits and retries); ``drop_newest`` drops ``batch`` (counted, returns None);
        ``drop_oldest`` evicts the oldest batches that are not in flight (counted) to make room.
        A batch larger than ``max_bytes`` on its own is stored when the buffer is empty."""

    @abstractmethod
    def begin(self, max_rows: int) -> Tx | None:
        """The oldest batches not already in flight: at least one batch (even if larger than
        ``max_rows``), then more while the total stays <= ``max_rows``. None when nothing is waiting."""

    @abstractmethod
    def end(self, tx: Tx, accept: bool) -> None:
        """Accept (delete for good) or reject (return to the front, original order) ``tx``."""

    def accept_all(self, txs: list[Tx]) -> None:
        """Accept several transactions at once (a sink commit covers them all); durable buffers
        delete them in one store transaction. Transactions already ended are skipped."""
        for tx in txs:
            if not tx.done:
                self.end(tx, accept=True)

    @abstractmethod
    def ack_through(self, buffer_id: str, seq: int) -> int:
        """If ``buffer_id`` is this buffer's, delete every batch with sequence <= ``seq`` (a sink
        committed them before a crash). Returns the number of rows deleted."""

    @property
    @abstractmethod
    def rows(self) -> int: ...

    @property
    @abstractmethod
    def nbytes(self) -> int: ...

    @property
    @abstractmethod
    def batches(self) -> int: ...

    @abstractmethod
    def close(self) -> None:
        """Close the store. Idempotent. Batches in flight stay stored (replayed on next open)."""
