"""End to end: the real agent process writes a raw dataset, `axedge dataset build` curates it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds

CFG = """\
agent:
  id: gw-e2e
  data_dir: {root}/data
  state_dir: {root}/state
  http: {{listen_port: 0}}
sinks:
  - id: raw
    type: parquet
    max_file_age_secs: 0.5
connectors:
  - id: press
    type: synthetic
    asset: acme/plant1/line1/press
    rate_hz: 20
    signals:
      - {{name: temperature, unit: Cel, waveform: sine, amplitude: 5, offset: 60, period_secs: 2}}
      - {{name: strokes, waveform: counter, amplitude: 1}}
"""


def axedge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[2])


def test_agent_output_builds_into_a_curated_dataset(tmp_path):
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(CFG.format(root=tmp_path))
    run = axedge("run", str(cfg), "--duration-secs", "4", "--no-status")
    assert run.returncode == 0, run.stderr[-2000:]
    out = tmp_path / "curated"
    res = axedge("dataset", "build", str(tmp_path / "data"), "--out", str(out), "--period", "100ms",
                 "--cycles", "strokes", "--embargo", "0s")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["rows"] >= 20 and summary["issues"]["duplicate_rows"] == 0
    t = ds.dataset(out / "curated", partitioning="hive").to_table().sort_by("time").to_pandas()
    # 20 Hz samples on a 100 ms grid: two samples per period, both signals observed in inner rows
    inner = t.iloc[1:-1]
    assert (inner["temperature__state"] == 0).mean() > 0.9
    assert inner["temperature"].between(54.9, 65.1).all()
    meta = json.loads((out / "_axedge/dataset.json").read_text())
    assert meta["provenance"]["source"]["producers"][0]["gateway"] == "gw-e2e"
    sig = {s["name"]: s for s in meta["signals"]}
    assert sig["temperature"]["ucum"] == "Cel" and sig["strokes"]["aggregation"] == "last"
    assert meta["assets"][0]["cycles"] >= 1
