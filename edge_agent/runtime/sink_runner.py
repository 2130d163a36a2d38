"""SinkRunner: moves batches from one sink's durable buffer into the sink, transactionally."""

from __future__ import annotations

import asyncio
import logging
import time

import pyarrow as pa

from edge_agent.buffer.base import Buffer, Tx
from edge_agent.errors import BufferFull
from edge_agent.runtime.backoff import Backoff
from edge_agent.runtime.memory import trim
from edge_agent.sinks.base import Sink

log = logging.getLogger("axedge.runtime")


class SinkRunner:
    def __init__(self, sink_id: str, sink: Sink, buffer: Buffer) -> None:
        self.sink_id = sink_id
        self.sink = sink
        self.buffer = buffer
        # One batch per transaction (see run()): a transaction never holds more than one decoded
        # batch; a commit accepts all of its transactions at once.
        self.state = "starting"
        self.last_error: str | None = None
        self._data = asyncio.Event()
        self._space = asyncio.Event()
        self._stopping = False
        self._pressure = False  # a put is waiting for room: commit early to free the buffer
        self._backoff = Backoff(0.5, 30.0)

    async def open(self) -> None:
        watermarks = await self.sink.open()
        for bid, seq in watermarks.items():
            skipped = await asyncio.to_thread(self.buffer.ack_through, bid, seq)
            if skipped:
                log.info("skipped batches already committed before a restart",
                         extra={"sink": self.sink_id, "rows": skipped, "through_seq": seq})
        if self.buffer.rows:
            log.info("replaying buffered data", extra={"sink": self.sink_id, "rows": self.buffer.rows})
            self._data.set()
        self.state = "connected"

    async def put(self, batch: pa.RecordBatch, deadline: float | None = None) -> bool:
        """Store ``batch`` in the buffer; with ``when_full=block`` wait for room (back-pressure).
        Returns False if the batch was dropped (counted by the buffer's policy or at deadline)."""
        while True:
            try:
                seq = await asyncio.to_thread(self.buffer.put, batch)
                self._data.set()
                return seq is not None
            except BufferFull:
                if deadline is not None and time.monotonic() > deadline:
                    self.buffer.on_drop(batch.num_rows, "shutdown_deadline")
                    return False
                self._pressure = True
                self._data.set()  # wake the sink loop so it commits what it holds
                self._space.clear()
                try:
                    await asyncio.wait_for(self._space.wait(), 0.5)
                except TimeoutError:
                    pass

    def stop(self) -> None:
        self._stopping = True
        self._data.set()

    async def run(self, deadline_fn=lambda: None) -> None:
        """Drain the buffer into the sink until stopped; on stop, drain what is left (within the
        deadline), commit, close."""
        pending: list[Tx] = []
        try:
            while True:
                if self._stopping:
                    dl = deadline_fn()
                    if dl is not None and time.monotonic() > dl:
                        break
                # One batch per transaction: a durable buffer decodes only the batch being written;
                # the commit accepts them together.
                tx = await asyncio.to_thread(self.buffer.begin, 1)
                if tx is None:
                    # Everything stored is in the sink. A put waiting for room (pressure) makes the
                    # commit due now: one commit then frees the whole buffer, instead of one small
                    # commit (a set of small files, fsyncs) per transaction.
                    if pending and (self._stopping or self._pressure or self.sink.commit_due()):
                        pending = await self._commit(pending)
                        continue
                    if self._stopping:
                        break
                    self._data.clear()
                    wait = self.sink.until_commit() if pending else None
                    try:
                        await asyncio.wait_for(self._data.wait(), 1.0 if wait is None else max(0.01, min(wait, 1.0)))
                    except TimeoutError:
                        pass
                    if pending and self.sink.commit_due():
                        pending = await self._commit(pending)
                    continue
                pending.append(tx)
                try:
                    for i, seq in enumerate(tx.seqs):
                        batch, tx.batches[i] = tx.batches[i], None  # written batches are not held here
                        await self.sink.write(self.buffer.buffer_id, seq, batch)
                        del batch
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - sink boundary: reject and retry
                    pending = await self._fail(pending, exc)
                    continue
                tx.batches = []  # the sink has the rows; keep only the seqs until commit (bounded memory)
                if self.sink.commit_due():
                    pending = await self._commit(pending)
            if pending:
                pending = await self._commit(pending)
        finally:
            for tx in pending:
                if not tx.done:
                    self.buffer.end(tx, accept=False)
            self.state = "stopped"

    async def _commit(self, pending: list[Tx]) -> list[Tx]:
        try:
            await self.sink.commit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            return await self._fail(pending, exc)
        await asyncio.to_thread(self.buffer.accept_all, pending)
        await asyncio.to_thread(trim)  # the commit freed the files' row buffers: return the pages
        self._pressure = False
        self._space.set()
        self._backoff.reset()
        self.state = "connected"
        self.last_error = None
        return []

    async def _fail(self, pending: list[Tx], exc: Exception) -> list[Tx]:
        self.state = "failing"
        self.last_error = str(exc)
        self.sink.ctx.metrics.count_error(type(exc).__name__)
        try:
            await self.sink.abort()
        except Exception as abort_exc:  # noqa: BLE001
            log.warning("sink abort failed", extra={"sink": self.sink_id, "error": str(abort_exc)})
        for tx in pending:
            self.buffer.end(tx, accept=False)
        delay = self._backoff.next_delay()
        log.warning("sink failed; data stays in the buffer and is retried",
                    extra={"sink": self.sink_id, "error": str(exc), "retry_in_secs": round(delay, 2)})
        if not self._stopping:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(min(delay, 1.0))
        return []
