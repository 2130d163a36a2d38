"""The anomaly processor inside the agent: a bundle trained on normal data scores live samples;
scores and events land in the raw dataset as signals; a shifted process raises events."""

import asyncio
import json

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

import models
from edge_agent.config import load_config_text
from edge_agent.runtime.agent import Agent

CFG = """\
agent:
  id: gw-anomaly
  data_dir: {root}/data
  state_dir: {root}/state
  http: {{enabled: false}}
core:
  batch: {{max_rows: 2000, max_age_secs: 0.1}}
buffer: {{kind: memory}}
sinks: [{{id: raw, type: parquet, max_file_age_secs: 0.5}}]
connectors:
  - id: synth
    type: synthetic
    asset: plant1/casting/line1/pourer
    rate_hz: 10
    chunk_secs: 1
    max_speed: true
    max_rows: 8000
    seed: 3
    signals:
      - {{name: melt_temperature, unit: Cel, waveform: sine, amplitude: 5, offset: 1420, period_secs: 60, noise: {noise}}}
      - {{name: ladle_weight, unit: kg, waveform: sine, amplitude: 100, offset: 600, period_secs: 60, noise: {noise}}}
processors:
  - id: pour
    type: anomaly
    model_dir: {root}/model
    asset: plant1/casting/line1/pourer
    reload_check_secs: 0.2
"""


def train_bundle(root):
    t = np.arange(6000) / 10.0
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "time": pd.to_datetime((t * 1e9).astype("int64"), utc=True),
        "melt_temperature": 1420 + 5 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 0.2, len(t)),
        "ladle_weight": 600 + 100 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 0.2, len(t)),
    })
    b = models.train(df, kind="pca", units={"melt_temperature": "Cel", "ladle_weight": "kg"})
    b.save(root / "model")
    return b


async def run_agent(root, noise):
    agent = Agent(load_config_text(CFG.format(root=root, noise=noise)))
    task = asyncio.create_task(agent.run())
    await agent.started.wait()
    for _ in range(1200):
        if agent.metrics.total_received() >= 8000:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    agent.request_stop()
    await task
    return agent


def read(root):
    t = ds.dataset(root / "data" / "raw", partitioning="hive").to_table().to_pandas()
    t["signal"] = t["signal"].astype(str)
    return t


async def test_scores_recorded_and_quiet_on_normal_data(tmp_path):
    train_bundle(tmp_path)
    agent = await run_agent(tmp_path, noise=0.2)
    st = agent.processors[0].stats()
    assert st["state"] == "stopped" and st["windows_scored"] > 3000
    df = read(tmp_path)
    scores = df[df["signal"] == "plant1/casting/line1/pourer/anomaly_score.pour"]
    assert len(scores) == st["windows_scored"]
    assert scores["value"].notna().all()
    events = df[df["signal"] == "plant1/casting/line1/pourer/anomaly_event.pour"]
    assert len(events) == st["events"]
    assert st["anomalous_windows"] / st["windows_scored"] < 0.03  # the bundle targets 1 % false alarms


async def test_shifted_process_raises_events_with_top_signals(tmp_path):
    train_bundle(tmp_path)
    agent = await run_agent(tmp_path, noise=8.0)  # noisy process: far outside the trained envelope
    df = read(tmp_path)
    st = agent.processors[0].stats()
    assert st["anomalous_windows"] / st["windows_scored"] > 0.5
    events = df[df["signal"] == "plant1/casting/line1/pourer/anomaly_event.pour"]
    assert len(events) >= 1
    ev = json.loads(events["value_text"].iloc[0])
    assert ev["peak_score"] > ev["threshold"]
    assert ev["top_signals"] and ev["top_signals"][0]["signal"] in ("melt_temperature", "ladle_weight",
                                                                     "plant1/casting/line1/pourer/melt_temperature",
                                                                     "plant1/casting/line1/pourer/ladle_weight")
    assert list(agent.events)[0]["model"] == ev["model"]


async def test_bad_bundle_waits_and_never_stops_collection(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{not json")
    agent = await run_agent(tmp_path, noise=0.2)
    p = agent.processors[0]
    assert p.scorer is None and p.waiting_checks >= 1 and p.last_error
    assert agent.metrics.total_committed() == 8000
