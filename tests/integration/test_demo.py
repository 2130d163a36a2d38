"""`axedge demo` end to end (what `make demo` runs): three simulators, three protocols, models
trained on the learning phase, live scoring, injected faults with ground truth, datasets, report
and the anomaly table."""

import csv
import json
import subprocess
import sys

import pyarrow.dataset as ds


def test_demo_builds_datasets_scores_live_and_logs_injected_faults(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "edge_agent.cli", "demo", "--duration-secs", "60", "--out", str(out),
                        "--no-dashboard"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    raw = ds.dataset(out / "data" / "raw", partitioning="hive").to_table(columns=["signal", "asset"]).to_pandas()
    assets = set(raw["asset"].unique())
    assert {"demo-plant.foundry.casting-line-1.pourer", "demo-plant.machining.cell-1.mill-1"} <= assets
    assert any(a.startswith("demo-plant.foundry.casting-line-1.sensor") for a in assets), assets  # MQTT nodes
    assert summary["curated_rows"] > 0
    cur = ds.dataset(out / "curated" / "curated", partitioning="hive").to_table()
    assert cur.num_rows == summary["curated_rows"]
    assert "label" in cur.column_names and any(v for v in cur.column("label").to_pylist() if v)
    html = (out / "report.html").read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org", "")
    # models were trained on the learning phase and scored live: scores are in the raw dataset
    scored = raw[raw["signal"].astype(str).str.contains("/anomaly_score.")]
    assert len(scored) > 100
    assert {p.name for p in (out / "models").iterdir()} == {"casting", "mill", "sensor0"}
    with open(out / "anomalies.csv") as f:
        rows = list(csv.DictReader(f))
    assert summary["anomaly_events"] == len(rows)
    # faults were injected and logged as ground truth by all three simulators
    labels = {p.stem: p.read_text().splitlines() for p in (out / "labels").glob("*.jsonl")}
    assert all(labels.get(k) for k in ("casting-line", "machine-tool", "sensors")), labels
    # Not asserted: that a detection matches an injected fault. Models trained on ~30 s of
    # learning alarm on normal data too (bench/demo_ground_truth.py); a strict match is
    # reported in anomalies.csv but is not yet reliable run to run.
    assert "Open it:" in r.stdout and "read_parquet" in r.stdout
