"""SAMPLE_SCHEMA batches for the buffer tests, reproducible from a seed (also used by tests/fault)."""

import numpy as np
import pyarrow as pa

from dataset_builder.format import SAMPLE_SCHEMA


def sample_batch(rows: int, seed: int) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000_000_000_000 + seed * 1_000_000_000
    ts = t0 + np.arange(rows, dtype=np.int64) * 1_000_000
    values = rng.normal(size=rows)
    value_mask = rng.random(rows) < 0.1
    texts = [None if i % 3 else f"s{seed}-{i}" for i in range(rows)]
    return pa.record_batch(
        [
            pa.array(rng.integers(0, 500, rows, dtype=np.int32)),
            pa.array(ts, pa.timestamp("ns", tz="UTC")),
            pa.array(np.where(value_mask, ts, ts - 5), pa.timestamp("ns", tz="UTC"), mask=value_mask),
            pa.array(ts + 7, pa.timestamp("ns", tz="UTC")),
            pa.array(values, pa.float64(), mask=value_mask),
            pa.array(texts, pa.string()),
            pa.array(rng.integers(0, 2**32, rows, dtype=np.uint32)),
        ],
        schema=SAMPLE_SCHEMA,
    )
