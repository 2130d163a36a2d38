"""Raw Parquet dataset sink: wraps :class:`dataset_builder.writer.RawDatasetWriter`.

The writer is synchronous; the sink runs it in a worker thread. Exactly-once into the dataset:
the writer's manifest records ``(buffer_id, seq range)`` per commit; ``open()`` returns the
watermarks so the runtime drops already-committed batches from the buffer after a crash, and
``write()`` skips any seq at or below the watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import ByteSize, Field

from edge_agent import __version__
from dataset_builder.format import DatasetError as _WriterError
from edge_agent.config.base import ComponentId, StrictModel
from edge_agent.errors import DatasetError, SinkUnavailable
from edge_agent.sinks.base import Sink, SinkContext


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """dataset_builder does not import edge_agent: translate its errors once, here."""
    try:
        yield
    except _WriterError as exc:
        cls = SinkUnavailable if exc.transient else DatasetError
        hint = exc.hint if not exc.path else f"{exc.hint or 'check the path'} ({exc.path})"
        raise cls(exc.message, hint=hint) from exc


class ParquetSinkConfig(StrictModel):
    """Writes the raw layer of an axedge dataset (Hive-partitioned Parquet, see docs/dataset-format.md)."""

    id: ComponentId = Field("raw", description="Sink id")
    type: Literal["parquet"]
    path: Path | None = Field(None, description="Dataset root; default agent.data_dir")
    max_file_rows: int = Field(5_000_000, ge=1, description="Commit (rotate) files at this many rows")
    max_file_bytes: ByteSize = Field(ByteSize(128 * 1024 * 1024), description="Commit (rotate) files at about this size")
    max_file_age_secs: float = Field(60.0, gt=0, description="Commit open files at least this often (bounds data not yet visible)")
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet compression codec")
    compression_level: int | None = Field(None, description="Codec level (zstd 1-22); default the codec's")
    max_buffer_bytes: ByteSize = Field(
        ByteSize(32 * 1024 * 1024), ge=1024 * 1024,
        description="Memory for rows waiting for their row group, all open files together (the largest is written "
        "out first when it is exceeded). Smaller uses less RAM on small gateways and writes smaller row groups",
    )
    row_group_rows: int = Field(1 << 18, ge=1000, description="Rows per Parquet row group and file, at most")


class ParquetSink(Sink):
    def __init__(self, config: ParquetSinkConfig, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self.root = Path(config.path) if config.path is not None else ctx.data_dir
        self._writer = None
        self._catalog_version = -1
        self._watermarks: dict[str, int] = {}
        self._pending_rows = 0

    async def open(self) -> dict[str, int]:
        from dataset_builder.writer import RawDatasetWriter

        cfg = self.config
        self._writer = RawDatasetWriter(
            self.root,
            max_file_rows=cfg.max_file_rows,
            max_file_bytes=int(cfg.max_file_bytes),
            max_file_age_secs=cfg.max_file_age_secs,
            compression=cfg.compression,
            compression_level=cfg.compression_level,
            max_buffer_bytes=int(cfg.max_buffer_bytes),
            row_group_rows=cfg.row_group_rows,
            provenance={
                "gateway": self.ctx.agent_id,
                "axedge_version": __version__,
                "config_hash": self.ctx.config_hash,
                "sink": self.ctx.sink_id,
            },
        )
        with _translated():
            self._watermarks = dict(await asyncio.to_thread(self._writer.open))
        repaired = ("quarantined", "rolled_forward", "torn_manifest_tail_bytes")
        rec = {k: v for k, v in (self._writer.recovery or {}).items() if v and k in repaired}
        if rec:
            self.ctx.log.warning("dataset recovered after an unclean stop", extra={"path": str(self.root), **rec})
        self.ctx.metrics.extra = self._writer_stats
        return dict(self._watermarks)

    def _writer_stats(self) -> dict[str, int]:
        st = self._writer.stats if self._writer is not None else None
        if st is None:
            return {}
        return {k: int(getattr(st, k)) for k in ("unknown_signal_rows", "skipped_rows", "aborted_rows",
                                                  "quarantined_files", "rolled_forward_files", "torn_manifest_tails")}

    def _sync_catalog(self) -> None:
        cat = self.ctx.catalog
        version = cat.version  # read first: a signal registered meanwhile makes the next call sync again
        if version != self._catalog_version:
            self._writer.set_catalog(cat.to_records())
            self._catalog_version = version

    async def write(self, buffer_id: str, seq: int, batch: pa.RecordBatch) -> None:
        if seq <= self._watermarks.get(buffer_id, -1):
            return  # committed before a restart: replay is idempotent
        with _translated():
            await asyncio.to_thread(self._write, buffer_id, seq, batch)
        self._pending_rows += batch.num_rows

    def _write(self, buffer_id: str, seq: int, batch: pa.RecordBatch) -> None:
        """In the worker thread: a new catalog (10,000 signals: ~0.1 s) is installed off the event loop."""
        self._sync_catalog()
        self._writer.write(buffer_id, seq, batch)

    def commit_due(self) -> bool:
        return self._writer is not None and self._writer.commit_due()

    def _commit(self) -> dict | None:
        self._sync_catalog()
        return self._writer.commit()

    def until_commit(self) -> float | None:
        return None if self._writer is None else self._writer.until_commit()

    async def commit(self) -> None:
        with _translated():
            info = await asyncio.to_thread(self._commit)
        if info:
            for bid, rng in (info.get("buffers") or {}).items():
                self._watermarks[bid] = max(self._watermarks.get(bid, -1), int(rng[1]))
            files = info.get("files") or []
            self.ctx.metrics.count_committed(sum(int(f.get("rows", 0)) for f in files), len(files))
        self._pending_rows = 0

    async def abort(self) -> None:
        if self._writer is not None:
            with _translated():
                await asyncio.to_thread(self._writer.abort)
        self._pending_rows = 0

    async def aclose(self) -> None:
        if self._writer is not None:
            try:
                with _translated():
                    await asyncio.to_thread(self._writer.close)
            finally:
                self._writer = None


def build(config: ParquetSinkConfig, ctx: SinkContext) -> Sink:
    return ParquetSink(config, ctx)
