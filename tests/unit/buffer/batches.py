"""SAMPLE_SCHEMA batches for the buffer tests, reproducible from a seed (also used by tests/fault)."""

import os
from pathlib import Path

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


# pyarrow's first timestamp array costs about a second (lazy set-up); pay it at import, so that a
# forkserver preloading this module hands out warm writers and SIGKILLs land in puts.
sample_batch(1, 0)


def put_forever(path: str, start: int, log: str) -> None:
    """Writer for the SIGKILL fault test (run in a child process): put numbered batches into the
    SQLite buffer at ``path`` forever, draining every third; append each step to ``log`` after it
    returned, unbuffered so the lines survive the kill."""
    from edge_agent.buffer.sqlite import SqliteBuffer

    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def say(*words) -> None:
        os.write(out, (" ".join(map(str, words)) + "\n").encode())

    buf = SqliteBuffer(Path(path), 10**10, "block", fsync="normal")
    say("ready")
    i = start
    while True:
        seq = buf.put(sample_batch(1 + i % 300, i))
        say("put", seq, i)
        if i % 3 == 2:
            tx = buf.begin(400)
            say("acking", *tx.seqs)
            buf.end(tx, accept=True)
            say("acked", *tx.seqs)
        i += 1
