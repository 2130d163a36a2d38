"""Anomaly-model benchmark: per-window latency and throughput of the default model.

``.venv/bin/python bench/models.py [--kind auto] [--signals 52] [--window 5] [--calls 5000]``
prints JSON:

* ``single_window``: p50/p99 latency (us) of one window per call through ``Bundle.run`` (what the
  edge scorer calls) and through a bare ONNX Runtime session on the same graph, one thread;
* ``batched``: windows/s in batches of 256 through ``Bundle.run``;
* ``edge_scorer``: the streaming path end to end (grid alignment, windowing, bounded queue,
  worker-thread inference, event tracking), one chunk per sampling period handed to ``process()``
  one at a time (a poll loop) or 50 at a time (a core batch): windows/s, samples/s and the
  event-loop cost of each ``process()`` call.

* ``agent``: the agent collecting (synthetic connector at maximum speed, ``--agent-rows`` rows of
  52 sine signals, memory buffer, raw Parquet sink) without and with the edge scorer fed every
  chunk the connector hands to the core: samples/s both ways and the scorer's windows/s. Until the
  runtime has its processor hook, the bench feeds the scorer from ``Agent._send``.

The training data is synthetic (correlated sensors), so the benchmark runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# this file is named like the package it measures: keep its folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def synthetic(n: int, s: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    latent = np.cumsum(rng.normal(size=(n, 4)), axis=0) * 0.05 + rng.normal(size=(n, 4))
    vals = 10 + latent @ rng.normal(size=(4, s)) + 0.2 * rng.normal(size=(n, s))
    df = pd.DataFrame(vals, columns=[f"s{j}" for j in range(s)])
    df.insert(0, "time", pd.date_range("2024-01-01", periods=n, freq="1s", tz="UTC"))
    return df


def quantiles_us(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1e6
    return {"p50_us": round(float(np.quantile(a, 0.5)), 1), "p99_us": round(float(np.quantile(a, 0.99)), 1), "mean_us": round(float(a.mean()), 1)}


def _concat(chunks):
    from edge_agent.core.chunk import SampleChunk

    return SampleChunk(
        signal_id=np.concatenate([c.signal_id for c in chunks]),
        source_time_ns=np.concatenate([c.source_time_ns for c in chunks]),
        receive_time_ns=np.concatenate([c.receive_time_ns for c in chunks]),
        value=np.concatenate([c.value for c in chunks]),
        quality=np.concatenate([c.quality for c in chunks]),
    )


AGENT_CONFIG = """\
agent: {{id: bench, data_dir: {root}/data, state_dir: {root}/state, log_level: warning, http: {{enabled: false}}}}
core:
  batch: {{max_rows: 100000, max_age_secs: 0.5}}
buffer: {{kind: memory, max_bytes: 256MiB}}
sinks:
  - {{id: raw, type: parquet, max_file_age_secs: 30}}
connectors:
  - id: synth
    type: synthetic
    asset: bench/area/line
    rate_hz: 100
    chunk_secs: 1.0
    max_speed: true
    max_rows: {rows}
    bulk: {{count: 52, name_prefix: s, waveform: sine}}
"""


def agent_run(bundle_dir: str | None, rows: int) -> dict:
    """One agent run; with ``bundle_dir`` an edge scorer sees every chunk the connector sends."""
    import asyncio
    import tempfile

    from edge_agent.config import load_config_text
    from edge_agent.runtime.agent import Agent
    from models.runtime import EdgeScorer

    class ScoringAgent(Agent):
        scorer: EdgeScorer | None = None

        async def _send(self, chunk) -> bool:
            if bundle_dir is not None:
                if self.scorer is None:
                    self.scorer = EdgeScorer(bundle_dir, self.catalog, max_queue_batches=256)
                    self.scorer.start()
                self.scorer.process(chunk)
            return await super()._send(chunk)

    with tempfile.TemporaryDirectory() as root:
        agent = ScoringAgent(load_config_text(AGENT_CONFIG.format(root=root, rows=rows)))

        async def run() -> tuple[float, object]:
            task = asyncio.create_task(agent.run())
            await agent.started.wait()
            t0 = time.perf_counter()
            while agent.metrics.total_received() < rows and not task.done():
                await asyncio.sleep(0.02)
            secs = time.perf_counter() - t0
            agent.request_stop()
            return secs, await task

        secs, res = asyncio.run(run())
    out = {"rows_committed": res.committed, "ingest_secs": round(secs, 2), "samples_per_sec": round(res.received / secs)}
    if agent.scorer is not None:
        agent.scorer.wait_idle(60)
        agent.scorer.close()
        st = agent.scorer.stats
        out.update(windows_scored=st.windows_scored, windows_dropped=st.windows_dropped,
                   windows_skipped=st.windows_skipped, windows_per_sec=round(st.windows_scored / secs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="auto")
    ap.add_argument("--signals", type=int, default=52)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--stream-periods", type=int, default=20000)
    ap.add_argument("--agent-rows", type=int, default=2_000_000)
    args = ap.parse_args()

    import onnxruntime as ort

    import models
    from edge_agent.core.chunk import SampleChunk
    from edge_agent.signals import SignalCatalog, SignalSpec
    from models.features import windows
    from models.runtime import EdgeScorer

    df = synthetic(3000, args.signals)
    t0 = time.perf_counter()
    bundle = models.train(df, kind=args.kind, window=args.window)
    train_secs = time.perf_counter() - t0
    x = windows(df.iloc[:, 1:].to_numpy(), args.window).astype(np.float32)
    rng = np.random.default_rng(1)
    picks = rng.integers(0, len(x), args.calls)

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    bare = ort.InferenceSession(bundle.onnx_bytes, so, providers=["CPUExecutionProvider"])
    for _ in range(200):  # warm up both
        bundle.run(x[:1])
        bare.run(None, {"x": x[:1]})
    lat_bundle, lat_bare = [], []
    for i in picks:
        w = x[i : i + 1]
        a = time.perf_counter()
        bundle.run(w)
        b = time.perf_counter()
        bare.run(None, {"x": w})
        c = time.perf_counter()
        lat_bundle.append(b - a)
        lat_bare.append(c - b)

    batch = x[:256]
    reps = max(1, 20000 // len(batch))
    a = time.perf_counter()
    for _ in range(reps):
        bundle.run(batch)
    batched_wps = reps * len(batch) / (time.perf_counter() - a)

    # streaming: one chunk (every signal) per sampling period, handed to process() one at a time
    # (a poll loop) and 50 at a time (a core batch)
    import tempfile

    cat = SignalCatalog()
    ids = np.array([cat.register(SignalSpec(name=c, asset="bench/line", connector="bench")) for c in df.columns[1:]])
    vals = df.iloc[:, 1:].to_numpy()
    period = bundle.period_ns
    chunks = [
        SampleChunk.from_values(ids, vals[i % len(vals)], source_time_ns=1_700_000_000 * 10**9 + i * period + 1000)
        for i in range(args.stream_periods)
    ]
    streaming = {}
    with tempfile.TemporaryDirectory() as d:
        bundle.save(d)
        for per_call in (1, 50):
            calls = [chunks[i : i + per_call] for i in range(0, len(chunks), per_call)]
            calls = [c[0] if per_call == 1 else _concat(c) for c in calls]
            scorer = EdgeScorer(d, cat, max_queue_batches=100_000)
            scorer.start()
            proc = []
            a = time.perf_counter()
            for c in calls:
                p0 = time.perf_counter()
                scorer.process(c)
                proc.append(time.perf_counter() - p0)
            scorer.wait_idle(300)
            secs = time.perf_counter() - a
            scorer.close()
            st = scorer.stats
            streaming[f"{per_call}_period_per_call"] = {
                "samples": st.samples_in,
                "windows_scored": st.windows_scored,
                "windows_dropped": st.windows_dropped,
                "windows_per_sec": round(st.windows_scored / secs),
                "samples_per_sec": round(st.samples_in / secs),
                "process_call": quantiles_us(proc),
                "worker_latency_per_window": {k: round(v, 1) for k, v in st.latency_quantiles_us().items()},
            }

    # the agent: the model's inputs are the synthetic connector's 52 signals at 100 Hz
    agent_df = synthetic(3000, 52)
    agent_df.columns = ["time", *[f"s{j}" for j in range(52)]]
    agent_df["time"] = pd.date_range("2024-01-01", periods=len(agent_df), freq="10ms", tz="UTC")
    with tempfile.TemporaryDirectory() as d:
        models.train(agent_df, kind=bundle.kind, window=args.window).save(d)
        agent = {"without_scorer": agent_run(None, args.agent_rows), "with_scorer": agent_run(d, args.agent_rows)}

    print(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "onnxruntime": ort.__version__},
                "model": {"kind": bundle.kind, "signals": args.signals, "window": bundle.window, "train_secs": round(train_secs, 2),
                          "onnx_bytes": len(bundle.onnx_bytes)},
                "single_window": {"calls": args.calls, "bundle_run": quantiles_us(lat_bundle), "bare_onnxruntime": quantiles_us(lat_bare)},
                "batched": {"batch": len(batch), "windows_per_sec": round(batched_wps)},
                "edge_scorer": streaming,
                "agent": agent,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
