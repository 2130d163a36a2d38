"""`axedge demo` end to end (what `make demo` runs): three simulators, three protocols, models
trained on the learning phase, live scoring, datasets, report and an anomaly that matches an
injected fault."""

import csv
import json
import subprocess
import sys

import pyarrow.dataset as ds


def test_demo_builds_datasets_and_detects_an_injected_fault(tmp_path):
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
    rows = list(csv.DictReader(open(out / "anomalies.csv")))
    assert rows and summary["events_matching_injected_faults"] >= 1
    assert any(row["matches_injected_fault"] for row in rows)
    assert "Open it:" in r.stdout and "read_parquet" in r.stdout
