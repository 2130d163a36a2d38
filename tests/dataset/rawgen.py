"""Raw axedge datasets for dataset-builder tests, written with the real RawDatasetWriter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from dataset_builder.format import SAMPLE_SCHEMA, TS_NS_UTC, asset_partition_value
from dataset_builder.writer import RawDatasetWriter

DAY0_NS = 1_763_856_000_000_000_000  # 2025-11-23T00:00:00Z
SEC = 1_000_000_000


def record(i: int, asset: str, name: str, unit: str | None = "degC", dtype: str = "float64", **extra) -> dict:
    return dict(id=i, key=f"{asset}/{name}", name=name, asset=asset, asset_partition=asset_partition_value(asset),
                unit=unit, dtype=dtype, address=f"ns=2;s={name}", connector="plc1", semantic_id=None,
                description=None, extra=extra)


def samples(ids, times_ns, values=None, *, quality=None, text=None, receive_ns=None) -> pa.RecordBatch:
    ids = np.asarray(ids, dtype=np.int32)
    n = ids.shape[0]
    times_ns = np.broadcast_to(np.asarray(times_ns, dtype=np.int64), (n,))
    values = np.zeros(n) if values is None else np.asarray(values, dtype=np.float64)
    quality = np.zeros(n, np.uint32) if quality is None else np.asarray(quality, dtype=np.uint32)
    recv = times_ns + 5_000_000 if receive_ns is None else np.asarray(receive_ns, np.int64)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(ids, pa.int32()),
            pa.array(times_ns, pa.int64()).cast(TS_NS_UTC),
            pa.nulls(n, TS_NS_UTC),
            pa.array(recv, pa.int64()).cast(TS_NS_UTC),
            pa.array(values, pa.float64(), mask=np.isnan(values)),
            pa.nulls(n, pa.string()) if text is None else pa.array(text, pa.string()),
            pa.array(quality, pa.uint32()),
        ],
        schema=SAMPLE_SCHEMA,
    )


def write_raw(root: Path, catalog: list[dict], batches: list[pa.RecordBatch], *, buffer: str = "test",
              provenance: dict | None = None) -> Path:
    """Write ``batches`` (one commit each, in order) into a raw dataset at ``root``."""
    w = RawDatasetWriter(root, provenance=provenance or {"gateway": "gw-test", "axedge_version": "test",
                                                         "config_hash": "cafe"})
    w.open()
    w.set_catalog(catalog)
    for seq, b in enumerate(batches):
        w.write(buffer, seq, b)
        w.commit()
    w.close()
    return root
