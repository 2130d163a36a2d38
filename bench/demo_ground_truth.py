"""Anomaly detection on the simulators' ground truth, end to end through the agent.

Runs ``axedge demo`` (casting line over Modbus, machine tool over OPC UA, sensor node over MQTT;
learn -> train -> watch with injected faults) and scores each model against the faults the
simulators logged for its machine: fault detected (an event overlapping the fault window),
detection delay (a detection is an event that starts during the fault; an alarm already running
when the fault starts is reported separately, not counted), false-alarm events (events overlapping no fault of that machine), and the
point-wise false-alarm rate of the scores outside fault windows (+5 s grace after each fault) and
before the first fault.

    .venv/bin/python bench/demo_ground_truth.py [--duration-secs 120] [--seed 1 [2 ...]] [--train]

By default the demo loads the models bundled for the simulators (trained on another seed by
``python -m edge_agent.demo.pretrain``); ``--train`` measures the demo's own short learning phase.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

MACHINE = {"casting": "casting-line", "mill": "machine-tool", "sensor0": "sensors"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration-secs", type=float, default=120)
    ap.add_argument("--seed", type=int, nargs="+", default=[1])
    ap.add_argument("--train", action="store_true", help="the demo trains on its own learning phase")
    args = ap.parse_args()
    runs = [run(args.duration_secs, seed, args.train) for seed in args.seed]
    print(json.dumps({"duration_secs": args.duration_secs, "train": args.train, "runs": runs}, indent=2))


def run(duration_secs: float, seed: int, train: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="axedge-gt-") as tmp:
        out = Path(tmp) / "demo"
        subprocess.run([sys.executable, "-m", "edge_agent.cli", "demo", "--duration-secs", str(duration_secs),
                        "--out", str(out), "--seed", str(seed), "--no-dashboard", *(["--train"] if train else [])],
                       check=True, stdout=subprocess.DEVNULL)
        raw = ds.dataset(out / "data" / "raw", partitioning="hive").to_table(
            columns=["time", "signal", "value", "value_text"]).to_pandas()
        raw["signal"] = raw["signal"].astype(str)
        results = []
        for pid, source in MACHINE.items():
            meta_path = out / "models" / pid / "model.json"
            if not meta_path.exists():
                continue
            meta = json.loads(meta_path.read_text())
            thr = float(meta["threshold"]["value"])
            labels = [json.loads(x) for x in (out / "labels" / f"{source}.jsonl").read_text().splitlines() if x.strip()]
            faults = [(int(lb["start_ns"]), int(lb["end_ns"]), lb["kind"]) for lb in labels]
            sc = raw[raw["signal"].str.endswith(f"/anomaly_score.{pid}")]
            t = sc["time"].astype("int64").to_numpy() * 1000  # us -> ns
            v = sc["value"].to_numpy()
            ev = raw[raw["signal"].str.endswith(f"/anomaly_event.{pid}")]
            events = [json.loads(x) for x in ev["value_text"]]
            in_fault = np.zeros(len(t), bool)
            for s0, e0, _k in faults:
                in_fault |= (t >= s0) & (t <= e0 + 5e9)
            normal = ~in_fault
            before = t < min((f[0] for f in faults), default=np.iinfo(np.int64).max)
            row = {"model": pid, "kind": meta.get("kind"), "threshold": round(thr, 4), "windows_scored": int(len(t)),
                   "pointwise_far": round(float((v[normal] > thr).mean()) if normal.any() else float("nan"), 4),
                   # before the first fault: some faults leave the process changed after they end (the
                   # melt stays cold until the next ladle refill), so alarms after a fault are not all false
                   "pointwise_far_before_faults": round(float((v[before] > thr).mean()) if before.any() else float("nan"), 4),
                   "pointwise_recall": round(float((v[in_fault] > thr).mean()) if in_fault.any() else float("nan"), 4),
                   "faults": []}
            for s0, e0, kind in faults:
                hits = [e for e in events if s0 - 1e9 <= e["start_ns"] <= e0]  # an event that starts during the fault
                running = any(e["start_ns"] < s0 - 1e9 and e["end_ns"] >= s0 for e in events)
                delay = round(max(0.0, (min(e["start_ns"] for e in hits) - s0) / 1e9), 2) if hits else None
                row["faults"].append({"kind": kind, "duration_secs": round((e0 - s0) / 1e9, 1), "detected": bool(hits),
                                      "delay_secs": delay, "alarm_already_running": running})
            row["false_alarm_events"] = sum(1 for e in events if not any(e["start_ns"] <= e0 + 5e9 and e["end_ns"] >= s0
                                                                      for s0, e0, _k in faults))
            row["events"] = len(events)
            results.append(row)
        return {"seed": seed, "models": results}


if __name__ == "__main__":
    main()
