"""Helpers for dataset_builder tests: catalog records and SAMPLE_SCHEMA batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dataset_builder.format import SAMPLE_SCHEMA, TS_NS_UTC, asset_partition_value

T0 = 1_763_900_000_000_000_000  # 2025-11-23T12:13:20Z in ns


def records(n: int, assets: list[str]) -> list[dict]:
    """``n`` signals spread round-robin over ``assets`` (like SignalCatalog.to_records())."""
    out = []
    for i in range(n):
        asset = assets[i % len(assets)]
        out.append(dict(id=i, key=f"{asset}/sig{i}", name=f"sig{i}", asset=asset,
                        asset_partition=asset_partition_value(asset), unit="degC", dtype="float64",
                        address=f"ns=2;i={i}", connector="plc1", semantic_id=None, description=None, extra={}))
    return out


def batch(ids, times_ns, values=None, *, quality=None, text=None, server_ns=None) -> pa.RecordBatch:
    ids = np.asarray(ids, dtype=np.int32)
    n = ids.shape[0]
    times_ns = np.broadcast_to(np.asarray(times_ns, dtype=np.int64), (n,))
    values = np.arange(n, dtype=np.float64) if values is None else np.asarray(values, dtype=np.float64)
    quality = np.zeros(n, np.uint32) if quality is None else np.asarray(quality, dtype=np.uint32)
    server = pa.nulls(n, TS_NS_UTC) if server_ns is None else pa.array(np.asarray(server_ns, np.int64)).cast(TS_NS_UTC)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(ids, pa.int32()),
            pa.array(times_ns, pa.int64()).cast(TS_NS_UTC),
            server,
            pa.array(times_ns + 5_000_000, pa.int64()).cast(TS_NS_UTC),
            pa.array(values, pa.float64(), mask=np.isnan(values)),
            pa.nulls(n, pa.string()) if text is None else pa.array(text, pa.string()),
            pa.array(quality, pa.uint32()),
        ],
        schema=SAMPLE_SCHEMA,
    )


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recs():
    return records


@pytest.fixture
def mk():
    return batch
