"""In-memory buffer (not durable) and the batch index both buffers share.

:class:`BatchIndex` is the bookkeeping that both :class:`MemoryBuffer` and
:class:`edge_agent.buffer.sqlite.SqliteBuffer` keep in memory: which sequence numbers are
stored (in order, with their rows and bytes), which are in flight, the running totals, and the
``when_full`` admission decision. The stores only hold the payloads.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable

import pyarrow as pa

from edge_agent.buffer.base import Buffer, Tx
from edge_agent.core.channel import WhenFull
from edge_agent.errors import BufferError, BufferFull


class BatchIndex:
    """Stored batches by sequence (oldest first), in-flight set and totals. Not thread-safe:
    the owning buffer holds its lock around every call."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[int, int]] = {}  # seq -> (rows, nbytes), insertion = seq order
        self.inflight: set[int] = set()
        self.rows = 0
        self.nbytes = 0

    def add(self, seq: int, rows: int, nbytes: int) -> None:
        self.entries[seq] = (rows, nbytes)
        self.rows += rows
        self.nbytes += nbytes

    def remove(self, seqs: list[int]) -> int:
        """Forget ``seqs`` (those still stored); returns the rows removed."""
        removed = 0
        for seq in seqs:
            entry = self.entries.pop(seq, None)
            self.inflight.discard(seq)
            if entry is not None:
                removed += entry[0]
                self.rows -= entry[0]
                self.nbytes -= entry[1]
        return removed

    def waiting(self):
        """(seq, rows, nbytes) of stored batches not in flight, oldest first."""
        for seq, (rows, nbytes) in self.entries.items():
            if seq not in self.inflight:
                yield seq, rows, nbytes

    def take(self, max_rows: int) -> list[int]:
        """Mark the oldest waiting batches in flight: at least one, then more while rows <= max_rows."""
        seqs: list[int] = []
        total = 0
        for seq, rows, _ in self.waiting():
            if seqs and total + rows > max_rows:
                break
            seqs.append(seq)
            total += rows
        self.inflight.update(seqs)
        return seqs

    def through(self, last: int) -> list[int]:
        return list(itertools.takewhile(lambda s: s <= last, self.entries))

    def admit(self, nbytes: int, max_bytes: int, when_full: WhenFull, where: str) -> list[int] | None:
        """Decide how a new batch of ``nbytes`` gets in. Returns the seqs to evict first ([] when it
        fits), or None when the new batch is to be dropped. Raises :class:`BufferFull` (block, or
        drop_oldest with only in-flight batches left to evict). Changes nothing."""
        if not self.entries or self.nbytes + nbytes <= max_bytes:
            return []
        if when_full is WhenFull.drop_newest:
            return None
        if when_full is WhenFull.drop_oldest:
            evict: list[int] = []
            free = max_bytes - self.nbytes - nbytes
            left = len(self.entries)
            for seq, _, size in self.waiting():
                evict.append(seq)
                free += size
                left -= 1
                if free >= 0 or left == 0:
                    return evict
        raise BufferFull(
            f"buffer {where} is full: {self.nbytes} of max_bytes={max_bytes} bytes used, "
            f"{len(self.inflight)} batches in flight; cannot store {nbytes} more bytes",
            hint="the sink is slower than the input or failing; the caller retries after the sink drains",
        )


class MemoryBuffer(Buffer):
    """The buffer contract in memory: same ordering, limits and sequence numbers, lost on exit.
    Sizes are the Arrow buffer sizes of the batches."""

    def __init__(self, max_bytes: int, when_full: WhenFull, on_drop: Callable[[int, str], None] | None = None):
        super().__init__(max_bytes, when_full, on_drop)
        self.buffer_id = str(uuid.uuid4())
        self._lock = threading.Lock()
        self._index = BatchIndex()
        self._data: dict[int, pa.RecordBatch] = {}
        self._seq = itertools.count(1)
        self._tx_ids = itertools.count(1)
        self._closed = False

    @staticmethod
    def size_of(batch: pa.RecordBatch) -> int:
        """Bytes a batch counts against ``max_bytes``."""
        return batch.get_total_buffer_size()

    def put(self, batch: pa.RecordBatch) -> int | None:
        size = self.size_of(batch)
        dropped: list[int] = []
        with self._lock:
            self._check_open()
            evict = self._index.admit(size, self.max_bytes, self.when_full, "memory")
            if evict is None:
                seq = None
                dropped.append(batch.num_rows)
            else:
                for old in evict:
                    dropped.append(self._index.entries[old][0])
                    del self._data[old]
                self._index.remove(evict)
                seq = next(self._seq)
                self._data[seq] = batch
                self._index.add(seq, batch.num_rows, size)
        for rows in dropped:
            self.on_drop(rows, "buffer_full")
        return seq

    def begin(self, max_rows: int) -> Tx | None:
        with self._lock:
            self._check_open()
            seqs = self._index.take(max_rows)
            if not seqs:
                return None
            entries = [self._index.entries[s] for s in seqs]
            return Tx(
                id=next(self._tx_ids),
                seqs=seqs,
                batches=[self._data[s] for s in seqs],
                rows=sum(e[0] for e in entries),
                nbytes=sum(e[1] for e in entries),
            )

    def end(self, tx: Tx, accept: bool) -> None:
        with self._lock:
            self._check_open()
            if tx.done:
                raise BufferError(f"transaction {tx.id} of buffer memory was already ended")
            tx.done = True
            if accept:
                for seq in tx.seqs:
                    self._data.pop(seq, None)
                self._index.remove(tx.seqs)
            else:
                self._index.inflight.difference_update(tx.seqs)

    def ack_through(self, buffer_id: str, seq: int) -> int:
        if buffer_id != self.buffer_id:
            return 0
        with self._lock:
            self._check_open()
            seqs = self._index.through(seq)
            for s in seqs:
                del self._data[s]
            return self._index.remove(seqs)

    @property
    def rows(self) -> int:
        return self._index.rows

    @property
    def nbytes(self) -> int:
        return self._index.nbytes

    @property
    def batches(self) -> int:
        return len(self._index.entries)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise BufferError("buffer memory is closed")
