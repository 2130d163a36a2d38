"""Durable buffer throughput against its raw limits, measured in the same run.

For batches of SAMPLE_SCHEMA data (default 50,000 rows, about 2.3 MB of Arrow IPC each) it times:

* ``ipc_roundtrip``: bare ``pa.ipc`` serialise + deserialise of the batches (no storage);
* ``sqlite_insert[fsync]``: bare SQLite inserts of the already serialised blobs, one commit per
  blob, WAL mode, in the same page size and ``synchronous`` setting as the buffer; and
  ``sqlite_roundtrip[fsync]``: the same inserts, then select + delete (one commit) of each blob;
* ``buffer[kind/fsync]``: ``put`` of every batch, then ``begin``/``end(accept)`` until empty.

and prints JSON: rows/s and MB/s of each, and the buffer's ``ratio_to_raw``, its put + drain
time against ``ipc_roundtrip + sqlite_roundtrip`` (what a buffer without bookkeeping or
checksums would cost). The buffer adds a CRC-32 per batch on put and on begin.
Each figure is the best of ``--repeat`` passes (the machine is shared; best-of shows capacity).
Files go under ``--dir`` (default: a temporary directory on the current file system, so
``fsync=full`` reaches the disk rather than a tmpfs).

    .venv/bin/python bench/buffer.py [--batches 40] [--rows 50000] [--repeat 3] [--dir .]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from dataset_builder.format import SAMPLE_SCHEMA
from edge_agent.buffer import open_buffer
from edge_agent.buffer.sqlite import PAGE_SIZE, SYNCHRONOUS, decode, encode

FSYNCS = ["off", "normal", "full"]


def make_batches(n: int, rows: int) -> list[pa.RecordBatch]:
    """Gateway-like samples: 1,000 signals at 1 kHz, float values, a few quality codes, no text."""
    rng = np.random.default_rng(7)
    out = []
    t = 1_700_000_000_000_000_000
    for _ in range(n):
        ts = t + np.arange(rows, dtype=np.int64) * 1_000
        t = int(ts[-1]) + 1_000
        out.append(pa.record_batch([
            pa.array(np.arange(rows, dtype=np.int32) % 1000),
            pa.array(ts, pa.timestamp("ns", tz="UTC")),
            pa.nulls(rows, pa.timestamp("ns", tz="UTC")),
            pa.array(ts + 250_000, pa.timestamp("ns", tz="UTC")),
            pa.array(rng.normal(size=rows)),
            pa.nulls(rows, pa.string()),
            pa.array(np.where(rng.random(rows) < 0.01, 0x80000000, 0).astype(np.uint32)),
        ], schema=SAMPLE_SCHEMA))
    return out


def time_ipc(batches) -> float:
    t0 = time.perf_counter()
    for b in batches:
        decode(encode(b).to_pybytes())  # to_pybytes: the copy SQLite also makes on read
    return time.perf_counter() - t0


def time_sqlite(blobs, root: Path, fsync: str) -> tuple[float, float]:
    """Seconds for the inserts, and for select + delete of every blob afterwards."""
    path = root / f"bare-{fsync}.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[fsync]}")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    t0 = time.perf_counter()
    for blob in blobs:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (blob) VALUES (?)", (memoryview(blob),))
        conn.execute("COMMIT")
    t1 = time.perf_counter()
    for seq in range(1, len(blobs) + 1):
        conn.execute("SELECT blob FROM t WHERE seq = ?", (seq,)).fetchone()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM t WHERE seq = ?", (seq,))
        conn.execute("COMMIT")
    t2 = time.perf_counter()
    conn.close()
    for p in root.glob(f"bare-{fsync}.sqlite*"):
        p.unlink()
    return t1 - t0, t2 - t0


def time_buffer(batches, root: Path, kind: str, fsync: str, rows_per_tx: int) -> tuple[float, float]:
    path = root / f"buf-{kind}-{fsync}.sqlite"
    buf = open_buffer(kind, path if kind == "sqlite" else None, 1 << 40, "block", fsync)
    t0 = time.perf_counter()
    for b in batches:
        buf.put(b)
    t1 = time.perf_counter()
    while (tx := buf.begin(rows_per_tx)) is not None:
        buf.end(tx, accept=True)
    t2 = time.perf_counter()
    assert buf.rows == 0
    buf.close()
    for p in root.glob(f"buf-{kind}-{fsync}.sqlite*"):
        p.unlink()
    return t1 - t0, t2 - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("."))
    args = ap.parse_args()

    batches = make_batches(args.batches, args.rows)
    total_rows = args.batches * args.rows
    blobs = [encode(b) for b in batches]
    mb = sum(b.size for b in blobs) / 1e6
    root = Path(tempfile.mkdtemp(prefix="axedge-bench-buffer-", dir=args.dir))

    def rate(secs: float) -> dict:
        return {"rows_per_s": round(total_rows / secs), "mb_per_s": round(mb / secs, 1)}

    try:
        ipc = min(time_ipc(batches) for _ in range(args.repeat))
        result: dict = {
            "batches": args.batches,
            "rows_per_batch": args.rows,
            "ipc_mb_per_batch": round(mb / args.batches, 2),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pyarrow": pa.__version__,
            "sqlite": sqlite3.sqlite_version,
            "raw": {"ipc_roundtrip": rate(ipc)},
            "buffer": {},
        }
        for fsync in FSYNCS:
            inserts, roundtrips = zip(*(time_sqlite(blobs, root, fsync) for _ in range(args.repeat)))
            result["raw"][f"sqlite_insert[{fsync}]"] = rate(min(inserts))
            result["raw"][f"sqlite_roundtrip[{fsync}]"] = rate(min(roundtrips))
            puts, drains = zip(*(time_buffer(batches, root, "sqlite", fsync, args.rows) for _ in range(args.repeat)))
            put, drain = min(puts), min(drains)
            result["buffer"][f"sqlite[{fsync}]"] = {
                "put": rate(put),
                "begin_end": rate(drain),
                "put_plus_drain": rate(put + drain),
                "ratio_to_raw": round((ipc + min(roundtrips)) / (put + drain), 2),
            }
        puts, drains = zip(*(time_buffer(batches, root, "memory", "off", args.rows) for _ in range(args.repeat)))
        result["buffer"]["memory"] = {"put": rate(min(puts)), "begin_end": rate(min(drains)),
                                      "put_plus_drain": rate(min(puts) + min(drains))}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
