"""Benchmark: RawDatasetWriter vs bare ``pyarrow.parquet.write_table`` on the same rows.

10,000 signals over 10 assets, every signal sampled once per tick (random floats). The writer
gets SAMPLE_SCHEMA batches (as the agent's sink does) and routes, converts, stages, fsyncs,
hashes and commits them; the bare run writes the same final table (RAW_FILE_SCHEMA, same codec
and dictionary settings) to one file. The writer's open() and its one-time catalog write (10,000
signals) are timed apart. Best of ``--repeat`` runs each, wall and CPU time. Prints JSON.

    .venv/bin/python bench/writer.py [--ticks 200] [--batch-ticks 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_builder.format import RAW_FILE_SCHEMA, SAMPLE_SCHEMA, TS_NS_UTC, TS_US_UTC, asset_partition_value
from dataset_builder.writer import RawDatasetWriter

T0 = 1_763_900_000_000_000_000


def make_records(n_signals: int, n_assets: int) -> list[dict]:
    out = []
    for i in range(n_signals):
        asset = f"acme/plant1/line{i % n_assets}/cell1/machine"
        out.append(dict(id=i, key=f"{asset}/sensor_{i:05d}", name=f"sensor_{i:05d}", asset=asset,
                        asset_partition=asset_partition_value(asset), unit="degC", dtype="float64",
                        address=f"ns=2;i={i}", connector="bench", semantic_id=None, description=None, extra={}))
    return out


def make_batches(n_signals: int, ticks: int, batch_ticks: int, seed: int = 7) -> list[pa.RecordBatch]:
    rng = np.random.default_rng(seed)
    batches = []
    ids = np.tile(np.arange(n_signals, dtype=np.int32), batch_ticks)
    for b in range(ticks // batch_ticks):
        tick = np.repeat(np.arange(b * batch_ticks, (b + 1) * batch_ticks, dtype=np.int64), n_signals)
        t = T0 + tick * 1_000_000_000 + rng.integers(0, 1_000_000, ids.size)
        n = ids.size
        batches.append(pa.RecordBatch.from_arrays(
            [pa.array(ids), pa.array(t).cast(TS_NS_UTC), pa.nulls(n, TS_NS_UTC), pa.array(t + 3_000_000).cast(TS_NS_UTC),
             pa.array(rng.normal(20.0, 5.0, n)), pa.nulls(n, pa.string()), pa.array(np.zeros(n, np.uint32))],
            schema=SAMPLE_SCHEMA))
    return batches


def final_table(batches: list[pa.RecordBatch], keys: list[str]) -> pa.Table:
    """The rows as they land in the raw files (one global signal dictionary)."""
    dictionary = pa.array(keys, pa.string())
    out = []
    for b in batches:
        out.append(pa.RecordBatch.from_arrays(
            [b.column(1).cast(TS_US_UTC, safe=False),
             pa.DictionaryArray.from_arrays(b.column(0), dictionary),
             b.column(4), b.column(5), b.column(6),
             b.column(2).cast(TS_US_UTC, safe=False), b.column(3).cast(TS_US_UTC, safe=False)],
            schema=RAW_FILE_SCHEMA))
    return pa.Table.from_batches(out)


def run_writer(root: Path, batches, records, commit_every: int) -> tuple[float, float, float, dict]:
    """Steady state: open() and the one-time catalog write (first commit) are timed apart."""
    t = time.perf_counter()
    w = RawDatasetWriter(root, max_file_age_secs=3600)
    w.open()
    w.set_catalog(records)
    w.write("bench", 0, batches[0].slice(0, 0))
    w.commit()
    setup = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    for seq, b in enumerate(batches, start=1):
        w.write("bench", seq, b)
        if commit_every and seq % commit_every == 0:
            w.commit()
    w.close()
    return time.perf_counter() - t, time.process_time() - c, setup, w.stats_dict()


def run_bare(path: Path, table: pa.Table, **opts) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    pq.write_table(table, path, **opts)
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signals", type=int, default=10_000)
    ap.add_argument("--assets", type=int, default=10)
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--batch-ticks", type=int, default=10, help="ticks per SAMPLE batch handed to write()")
    ap.add_argument("--commit-every", type=int, default=0, help="commit every N batches (0: once, at close)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    records = make_records(args.signals, args.assets)
    batches = make_batches(args.signals, args.ticks, args.batch_ticks)
    rows = sum(b.num_rows for b in batches)
    table = final_table(batches, [r["key"] for r in records])
    tmp = Path(tempfile.mkdtemp(prefix="axedge-bench-writer-"))
    try:
        inf = float("inf")
        best_w = best_b = best_d = (inf, inf)  # (wall, cpu) seconds, best of each
        stats: dict = {}
        setup = inf
        for i in range(args.repeat):
            root = tmp / f"ds{i}"
            wall, cpu, setup_i, stats = run_writer(root, batches, records, args.commit_every)
            best_w = tuple(map(min, best_w, (wall, cpu)))
            setup = min(setup, setup_i)
            files = list((root / "raw").rglob("*.parquet"))
            ds_bytes = sum(f.stat().st_size for f in files)
            shutil.rmtree(root)
            best_b = tuple(map(min, best_b, run_bare(tmp / f"bare{i}.parquet", table, compression="zstd",
                                                     use_dictionary=["signal", "value_text"])))
            best_d = tuple(map(min, best_d, run_bare(tmp / f"default{i}.parquet", table, compression="zstd")))
        bare_bytes = (tmp / "bare0.parquet").stat().st_size
        print(json.dumps({
            "rows": rows,
            "signals": args.signals,
            "assets": args.assets,
            "batch_rows": batches[0].num_rows,
            "commits": stats["commits"] - 1,
            "files": stats["files_committed"],
            "writer_rows_per_sec": round(rows / best_w[0]),
            "bare_write_table_rows_per_sec": round(rows / best_b[0]),
            "ratio": round(best_b[0] / best_w[0], 3),
            "writer_rows_per_cpu_sec": round(rows / best_w[1]),
            "bare_rows_per_cpu_sec": round(rows / best_b[1]),
            "cpu_ratio": round(best_b[1] / best_w[1], 3),
            "bare_default_options_rows_per_sec": round(rows / best_d[0]),
            "open_and_catalog_write_secs": round(setup, 3),
            "writer_bytes": ds_bytes,
            "bare_bytes": bare_bytes,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
