"""The sink contract.

The runtime's sink loop, one per sink::

    watermarks = await sink.open()          # {buffer_id: last committed seq}; buffer.ack_through(...)
    loop:
        tx = buffer.begin(max_rows)
        for seq, batch in zip(tx.seqs, tx.batches):
            await sink.write(buffer.buffer_id, seq, batch)   # the sink may hold data pending
        pending.append(tx)
        if sink.commit_due() or shutting down:
            await sink.commit()              # durable / delivered; after this, pending txs accepted
            buffer.end(tx, accept=True) for every pending tx
    on a transient error (SinkUnavailable, OSError): await sink.abort(); buffer.end(tx, accept=False)
        for pending txs; back off; retry (the same batches come again, oldest first)
    shutdown: await sink.commit(); await sink.aclose()

``write`` receives batches in :data:`dataset_builder.format.SAMPLE_SCHEMA` with strictly
increasing ``seq`` per buffer. A sink that records ``(buffer_id, seq)`` with what it commits can
make replays idempotent (the Parquet sink does, via its manifest).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from edge_agent.signals import SignalCatalog


class SinkMetrics:
    """Counters every sink feeds (bound to Prometheus by the runtime)."""

    def __init__(self) -> None:
        self.committed_rows = 0
        self.committed_files = 0
        self.errors: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.extra: Callable[[], dict[str, int]] = dict  # sink-specific counters (exported as axedge_sink_events_total)

    def count_committed(self, rows: int, files: int = 0) -> None:
        self.committed_rows += rows
        self.committed_files += files

    def count_error(self, type_: str, n: int = 1) -> None:
        self.errors[type_] = self.errors.get(type_, 0) + n

    def count_dropped(self, n: int, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


@dataclass
class SinkContext:
    sink_id: str
    catalog: SignalCatalog
    agent_id: str = "gateway"
    data_dir: Path = Path("./axedge-data")
    state_dir: Path = Path("./axedge-state")
    config_hash: str = ""
    metrics: SinkMetrics = field(default_factory=SinkMetrics)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("axedge.sink"))


class Sink(ABC):
    def __init__(self, config: Any, ctx: SinkContext) -> None:
        self.config = config
        self.ctx = ctx

    @abstractmethod
    async def open(self) -> dict[str, int]:
        """Prepare (recover, connect). Return ``{buffer_id: last committed seq}`` known to the sink."""

    @abstractmethod
    async def write(self, buffer_id: str, seq: int, batch: pa.RecordBatch) -> None:
        """Take one batch. It counts as delivered only after the next successful ``commit``."""

    def commit_due(self) -> bool:
        """True when pending data should be committed now (rotation limits, age)."""
        return True

    def until_commit(self) -> float | None:
        """Seconds until an age-based commit is due (None: nothing pending)."""
        return None

    @abstractmethod
    async def commit(self) -> None:
        """Make everything written so far durable / delivered, or raise."""

    @abstractmethod
    async def abort(self) -> None:
        """Discard pending, uncommitted data (it will be replayed from the buffer)."""

    async def aclose(self) -> None:  # noqa: B027
        """Release resources. The runtime commits before closing."""
