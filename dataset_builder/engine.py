"""Engines that run :func:`dataset_builder.curate.build_partition` over (asset, day) tasks.

* ``local``: a process pool on this machine (``workers`` processes, default the CPU count).
* ``spark``: Apache Spark via ``DataFrame.mapInArrow``: one row per task, each executor runs the
  same partition function and writes its files straight into the output directory, which must be
  on storage every executor and the driver see (a shared filesystem; see docs/dataset-builder.md).
  Only the small per-partition summaries travel back to the driver.

Both give identical files: the function is pure in (raw files, task, spec).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

ENGINES = ("local", "spark")


def run(engine: str, raw_root: str, out_root: str, tasks: list, spec: Any, *, workers: int | None = None,
        spark: Any = None) -> list[dict[str, Any]]:
    """Run every task; return their summaries (in task order)."""
    if engine == "local":
        return run_local(raw_root, out_root, tasks, spec, workers=workers)
    if engine == "spark":
        return run_spark(raw_root, out_root, tasks, spec, spark=spark)
    raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")


def run_local(raw_root: str, out_root: str, tasks: list, spec: Any, *, workers: int | None = None) -> list[dict]:
    from dataset_builder.curate import build_partition

    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    if workers == 1:
        return [build_partition(raw_root, out_root, t, spec) for t in tasks]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(build_partition, raw_root, out_root, t, spec) for t in tasks]
        return [f.result() for f in futures]


def run_spark(raw_root: str, out_root: str, tasks: list, spec: Any, *, spark: Any = None) -> list[dict]:
    """Run the tasks on Spark (``spark``: a SparkSession; default: the active one, or a new
    ``local[*]`` session). Requires the ``spark`` extra (pyspark)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise RuntimeError("the spark engine needs pyspark: pip install 'axedge[spark]'") from exc
    import pyarrow as pa

    session = spark or SparkSession.getActiveSession() or (
        SparkSession.builder.master("local[*]").appName("axedge-dataset-build")
        .config("spark.pyspark.python", sys.executable).getOrCreate())
    payload = pickle.dumps(spec)
    rows = [(i, pickle.dumps(t)) for i, t in enumerate(tasks)]
    # one Spark partition per task, no shuffle
    rdd = session.sparkContext.parallelize(rows, numSlices=max(1, len(tasks)))
    df = session.createDataFrame(rdd, "i long, task binary")

    def apply(batches):  # runs on the executors
        from dataset_builder.curate import build_partition

        sp = pickle.loads(payload)
        for b in batches:
            ids = b.column(0).to_pylist()
            blobs = b.column(1).to_pylist()
            out = [json.dumps(build_partition(raw_root, out_root, pickle.loads(x), sp)) for x in blobs]
            yield pa.RecordBatch.from_arrays([pa.array(ids, pa.int64()), pa.array(out, pa.string())],
                                             names=["i", "summary"])

    result = df.mapInArrow(apply, "i long, summary string").collect()
    by_i = {r["i"]: json.loads(r["summary"]) for r in result}
    return [by_i[i] for i in range(len(tasks))]
