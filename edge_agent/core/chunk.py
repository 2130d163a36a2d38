"""Columnar sample chunks: the unit connectors hand to the core.

A chunk is a handful of numpy arrays of equal length, never one Python object per sample.
Text values (strings, enumerations shown as text, arrays rendered as JSON) travel in an
optional per-row list; numeric signals leave it ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from dataset_builder.format import SAMPLE_SCHEMA, TS_NS_UTC, Quality, arrow_from_numpy, arrow_strings, null_array


def now_ns() -> int:
    return time.time_ns()


@dataclass(slots=True)
class SampleChunk:
    """``n`` samples as parallel arrays.

    * ``signal_id``: int32 ids from the :class:`~edge_agent.signals.SignalCatalog`
    * ``source_time_ns``: int64 ns since the epoch (UTC), the source's timestamp; connectors
      without a source clock use the receive time
    * ``receive_time_ns``: int64 ns, when the gateway received the value
    * ``value``: float64; rows with ``valid`` False are written as null (gaps, bad reads, text rows)
    * ``quality``: uint32 OPC UA status codes (see :class:`dataset_builder.format.Quality`)
    * ``text``: optional per-row text values (``None`` entries for numeric rows)
    * ``server_time_ns``: optional int64 ns (OPC UA ServerTimestamp); 0 means unknown
    * ``on_durable``: called once the chunk is in the durable buffer (end-to-end acks, e.g. MQTT)
    """

    signal_id: np.ndarray
    source_time_ns: np.ndarray
    receive_time_ns: np.ndarray
    value: np.ndarray
    quality: np.ndarray
    valid: np.ndarray | None = None
    text: Sequence[str | None] | None = None
    server_time_ns: np.ndarray | None = None
    on_durable: Callable[[], None] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.signal_id.shape[0])

    @property
    def nbytes(self) -> int:
        """Approximate in-memory size (used for byte-based batching and channel limits)."""
        n = len(self)
        size = n * (4 + 8 + 8 + 8 + 4)
        if self.text is not None:
            size += sum(len(t) for t in self.text if t) + 8 * n
        if self.server_time_ns is not None:
            size += 8 * n
        return size

    @classmethod
    def from_values(
        cls,
        signal_ids: Sequence[int] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        *,
        source_time_ns: int | np.ndarray | None = None,
        receive_time_ns: int | None = None,
        quality: int | np.ndarray = Quality.GOOD,
    ) -> SampleChunk:
        """Build a chunk for values sampled at (by default) one instant."""
        sid = np.asarray(signal_ids, dtype=np.int32)
        n = sid.shape[0]
        recv = now_ns() if receive_time_ns is None else receive_time_ns
        src = recv if source_time_ns is None else source_time_ns
        return cls(
            signal_id=sid,
            source_time_ns=np.broadcast_to(np.asarray(src, dtype=np.int64), (n,)).copy()
            if np.ndim(src) == 0
            else np.asarray(src, dtype=np.int64),
            receive_time_ns=np.full(n, recv, dtype=np.int64),
            value=np.asarray(values, dtype=np.float64),
            quality=np.full(n, int(quality), dtype=np.uint32)
            if np.ndim(quality) == 0
            else np.asarray(quality, dtype=np.uint32),
        )

    @classmethod
    def gap(cls, signal_ids: Sequence[int] | np.ndarray, quality: int, at_ns: int | None = None) -> SampleChunk:
        """Gap markers: a null value with a bad quality for each signal (a failed read)."""
        sid = np.asarray(signal_ids, dtype=np.int32)
        n = sid.shape[0]
        t = now_ns() if at_ns is None else at_ns
        ts = np.full(n, t, dtype=np.int64)
        return cls(
            signal_id=sid,
            source_time_ns=ts,
            receive_time_ns=ts.copy(),
            value=np.full(n, np.nan),
            quality=np.full(n, int(quality), dtype=np.uint32),
            valid=np.zeros(n, dtype=bool),
        )


def chunks_to_batch(chunks: Sequence[SampleChunk]) -> pa.RecordBatch:
    """Concatenate chunks into one Arrow record batch in :data:`SAMPLE_SCHEMA` (vectorised)."""
    if not chunks:
        return pa.RecordBatch.from_arrays([null_array(0, f.type) for f in SAMPLE_SCHEMA], schema=SAMPLE_SCHEMA)
    cat = np.concatenate
    sid = cat([c.signal_id for c in chunks]).astype(np.int32, copy=False)
    src = cat([c.source_time_ns for c in chunks]).astype(np.int64, copy=False)
    recv = cat([c.receive_time_ns for c in chunks]).astype(np.int64, copy=False)
    val = cat([c.value for c in chunks]).astype(np.float64, copy=False)
    qual = cat([c.quality for c in chunks]).astype(np.uint32, copy=False)
    n = sid.shape[0]

    valid = None
    if any(c.valid is not None for c in chunks):
        valid = cat([c.valid if c.valid is not None else np.ones(len(c), dtype=bool) for c in chunks])

    if any(c.server_time_ns is not None for c in chunks):
        srv = cat([c.server_time_ns if c.server_time_ns is not None else np.zeros(len(c), np.int64) for c in chunks])
        server_arr = arrow_from_numpy(srv.astype(np.int64, copy=False), TS_NS_UTC, srv != 0)
    else:
        server_arr = null_array(n, TS_NS_UTC)

    if any(c.text is not None for c in chunks):
        texts: list[str | None] = []
        for c in chunks:
            texts.extend(c.text if c.text is not None else [None] * len(c))
        text_arr = arrow_strings(texts)  # pa.array would import pandas
    else:
        text_arr = null_array(n, pa.string())

    return pa.RecordBatch.from_arrays(
        [
            arrow_from_numpy(sid, pa.int32()),
            arrow_from_numpy(src, TS_NS_UTC),
            server_arr,
            arrow_from_numpy(recv, TS_NS_UTC),
            arrow_from_numpy(val, pa.float64(), valid),
            text_arr,
            arrow_from_numpy(qual, pa.uint32()),
        ],
        schema=SAMPLE_SCHEMA,
    )
