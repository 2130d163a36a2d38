"""Core throughput: synthetic connector -> core -> buffer -> raw Parquet sink, as fast as it goes.

In the same run it times bare ``pyarrow.parquet.write_table`` (zstd) on the same data (the same
rows in the same file schema) and prints JSON: samples/s per buffer kind, the bare limit, their
ratio, and peak RSS of each agent run (each run is its own process so RSS is its own; with its
anonymous and file-backed parts), and whether the targets below were met in this run.

    .venv/bin/python bench/core_throughput.py [--rows 10000000] [--signals 10000] [--assets 10]

Targets (issue 2, 2-core machine): ratio >= 0.5 with the durable (sqlite) buffer, >= 0.8 with the
memory buffer; peak RSS < 250 MB with 10,000 signals (the default, durable configuration: a
memory buffer holds its whole ``max_bytes`` in RAM when flooded, 64 MiB here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONFIG = """\
agent:
  id: bench
  data_dir: {root}/data
  state_dir: {root}/state
  log_level: warning
  http: {{enabled: false}}
core:
  batch: {{max_rows: {batch_rows}, max_age_secs: 1.0}}
{channel}buffer:
  kind: {kind}
  max_bytes: {buffer_bytes}
  fsync: {fsync}
sinks:
  - id: raw
    type: parquet
    max_file_rows: {file_rows}
    max_file_age_secs: 30
    max_buffer_bytes: {writer_buffer}
connectors:
  - id: synth
    type: synthetic
    asset: bench/area/line
    rate_hz: 10
    chunk_secs: {chunk_secs}
    max_speed: true
    replay: true
    max_rows: {rows}
    bulk: {{count: {signals}, assets: {assets}, waveform: sine}}
"""


def peak_rss_mb() -> float:
    """VmHWM of this process. (ru_maxrss survives execve, so a child started by a big parent
    would report the parent's peak.)"""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(*keys: str) -> dict[str, float]:
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in keys:
            out[k] = int(v.split()[0]) / 1024
    return out


class RssSampler:
    """Peak anonymous and file-backed RSS, sampled every 20 ms. VmHWM is their peak sum, but the
    file-backed part (shared-library pages: pyarrow, numpy) depends on how the kernel's page
    cache holds those files (measured 50-86 MB for the same code), the anonymous part is what
    the agent allocates."""

    def __init__(self) -> None:
        self.peak = {"RssAnon": 0.0, "RssFile": 0.0}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for k, v in _status_mb("RssAnon", "RssFile").items():
                self.peak[k] = max(self.peak[k], v)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._t.join()
        return self.peak


def child(args: argparse.Namespace) -> None:
    from edge_agent.runtime.memory import tune_process

    tune_process()  # as `axedge run` does, before pyarrow and numpy load
    from edge_agent.config import load_config_text
    from edge_agent.runtime.agent import Agent

    root = Path(args.root)
    text = CONFIG.format(root=root, kind=args.kind, fsync=args.fsync, rows=args.rows, signals=args.signals,
                         assets=args.assets, batch_rows=args.batch_rows, file_rows=args.file_rows,
                         writer_buffer=args.writer_buffer, buffer_bytes=args.buffer_bytes,
                       channel=f"  channel_max_rows: {args.channel_rows}\n" if args.channel_rows else "",
                         chunk_secs=max(0.1, 50_000 / args.signals / 10))
    cfg = load_config_text(text)
    agent = Agent(cfg)

    async def main() -> dict:
        t0 = time.perf_counter()
        task = asyncio.create_task(agent.run())
        await agent.started.wait()
        t_start = time.perf_counter()
        while agent.metrics.total_received() < args.rows:
            await asyncio.sleep(0.02)
            if task.done():
                break
        t_received = time.perf_counter()
        agent.request_stop()  # shutdown drains the buffer and commits every open file
        res = await task
        t_end = time.perf_counter()
        return {"rows": res.committed, "elapsed_secs": t_end - t_start, "ingest_secs": t_received - t_start,
                "setup_secs": t_start - t0, "dropped": res.dropped}

    sampler = RssSampler()
    out = asyncio.run(main())
    peaks = sampler.stop()
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_anon_rss_mb"] = round(peaks["RssAnon"], 1)  # sampled: may miss a peak shorter than 20 ms
    out["peak_file_rss_mb"] = round(peaks["RssFile"], 1)
    out["samples_per_sec"] = out["rows"] / out["elapsed_secs"]
    print(json.dumps(out))


def bare_limit(rows: int, signals: int, assets: int, root: Path) -> dict:
    """Bare pyarrow write_table (zstd) of the same rows in the raw file schema, best of 3."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataset_builder.format import RAW_FILE_SCHEMA

    n = rows
    sid = np.tile(np.arange(signals, dtype=np.int32), n // signals + 1)[:n]
    t = 1_700_000_000_000_000 + (np.arange(n, dtype=np.int64) // signals) * 100_000
    rng = np.random.default_rng(0)
    vals = np.sin(np.arange(n) / 1000.0) * (1 + sid % 7) + sid % 100 + rng.standard_normal(n) * 0.01
    keys = pa.array([f"bench/area/line/unit{i % assets}/sig{i}" for i in range(signals)])
    table = pa.Table.from_arrays(
        [
            pa.array(t).cast(RAW_FILE_SCHEMA.field("time").type),
            pa.DictionaryArray.from_arrays(pa.array(sid), keys),
            pa.array(vals),
            pa.nulls(n, pa.string()),
            pa.array(np.zeros(n, np.uint32)),
            pa.nulls(n, RAW_FILE_SCHEMA.field("server_time").type),
            pa.array(t).cast(RAW_FILE_SCHEMA.field("receive_time").type),
        ],
        schema=RAW_FILE_SCHEMA,
    )
    path = root / "bare.parquet"
    times = []
    for _ in range(3):  # best of 3: the machine is shared, the limit should not be a slow outlier
        t0 = time.perf_counter()
        pq.write_table(table, path, compression="zstd")
        times.append(time.perf_counter() - t0)
    dt = min(times)
    return {"rows": n, "elapsed_secs": dt, "samples_per_sec": n / dt, "file_mb": path.stat().st_size / 1e6,
            "runs_secs": [round(t, 3) for t in times]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--signals", type=int, default=10_000)
    ap.add_argument("--assets", type=int, default=10)
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument("--file-rows", type=int, default=5_000_000)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--kind", default="sqlite")
    ap.add_argument("--writer-buffer", default="32MiB", help="the Parquet sink's max_buffer_bytes")
    ap.add_argument("--fsync", default="normal")
    ap.add_argument("--buffer-bytes", default="64MiB", help="buffer max_bytes (for the memory kind: RAM)")
    ap.add_argument("--channel-rows", type=int, default=0, help="core.channel_max_rows (0: the default)")
    ap.add_argument("--root")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    results: dict = {"rows": args.rows, "signals": args.signals, "assets": args.assets, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="axedge-bench-") as tmp:
        results["bare_write_table"] = bare_limit(args.rows, args.signals, args.assets, Path(tmp))
        for kind, fsync in (("sqlite", "normal"), ("memory", "off")):
            root = Path(tmp) / f"{kind}"
            cmd = [sys.executable, __file__, "--child", "--kind", kind, "--fsync", fsync, "--root", str(root),
                   "--rows", str(args.rows), "--signals", str(args.signals), "--assets", str(args.assets),
                   "--batch-rows", str(args.batch_rows), "--file-rows", str(args.file_rows),
                   "--writer-buffer", args.writer_buffer, "--channel-rows", str(args.channel_rows),
                   "--buffer-bytes", args.buffer_bytes]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                results[f"agent_{kind}"] = {"error": out.stderr[-2000:]}
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["ratio_to_bare"] = r["samples_per_sec"] / results["bare_write_table"]["samples_per_sec"]
            results[f"agent_{kind}"] = r
    sq, mem = results.get("agent_sqlite", {}), results.get("agent_memory", {})
    results["targets"] = {  # issue 2; the memory buffer's own max_bytes is RAM, see docs/performance.md
        "durable_ratio_ge_0.5": sq.get("ratio_to_bare", 0) >= 0.5,
        "memory_ratio_ge_0.8": mem.get("ratio_to_bare", 0) >= 0.8,
        "durable_peak_rss_lt_250mb": 0 < sq.get("peak_rss_mb", 0) < 250,
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
