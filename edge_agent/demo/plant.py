"""The plant in a box: three simulated machines, three protocols, one agent, live anomaly scoring.

Phases (all on this machine, offline):

1. **load**: the anomaly models bundled for the simulators (``edge_agent/demo/models``, trained
   by :mod:`edge_agent.demo.pretrain`); with ``--train`` instead, a **learn** phase (the agent
   collects normal operation into the raw dataset) and a **train** phase (curated onto a 200 ms
   grid, one model per machine with ``models.train``).
2. **watch**: the casting line (Modbus TCP), the machine tool (OPC UA) and four retrofit sensor
   nodes (MQTT JSON + Sparkplug B, embedded broker) run; the agent scores them live while the
   simulators inject faults on a schedule (melt temperature drop, spindle bearing fault, sensor
   noise burst), each logged as a ground-truth label; the dashboard shows connectors, rates,
   buffer and anomalies live.
3. **report**: the curated dataset (with the labels), the HTML report and the anomaly table, and
   how to open them.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

CASTING_INPUTS = ["melt_temperature", "ladle_weight", "pouring_rate", "stopper_position"]  # the 0.2 s poll group: a 1 s signal would be stale on the model grid
MILL_INPUTS = ["spindle_load", "spindle_vibration_rms", "coolant_temperature", "spindle_speed"]
MILL_NODES = {
    "spindle_speed": ("Monitoring/Spindle/ActualSpeed", "1/min"),
    "spindle_load": ("Monitoring/Spindle/Load", None),
    "spindle_vibration_rms": ("Monitoring/Spindle/VibrationRMS", None),
    "axis_x_position": ("Monitoring/AxisX/ActualPosition", None),
    "axis_x_load": ("Monitoring/AxisX/Load", None),
    "coolant_temperature": ("Monitoring/Coolant/Temperature", None),
    "coolant_flow": ("Monitoring/Coolant/Flow", None),
    "part_counter": ("Production/PartCounter", None),
}
CASTING_ASSET = "demo-plant/foundry/casting-line-1/pourer"
MILL_ASSET = "demo-plant/machining/cell-1/mill-1"
SENSOR_ASSET = "demo-plant/foundry/casting-line-1/sensor0"
SENSOR_INPUTS = ["vibration", "temperature"]
MODELS = (("casting", CASTING_ASSET, CASTING_INPUTS), ("mill", MILL_ASSET, MILL_INPUTS), ("sensor0", SENSOR_ASSET, SENSOR_INPUTS))
BUNDLED_MODELS = Path(__file__).with_name("models")
# The simulators run their cycles faster than life so that a short run sees several of them. The
# bundled models were trained at these settings: change them and retrain (edge_agent/demo/pretrain.py).
CASTING_SPEED = 4.0
# OPC UA subscriptions report changes only: the spindle speed sends nothing while the spindle stands
# (about 1 s between parts). Training data and live scoring both hold a value this long.
HOLD_SECS = 3
MILL_CYCLE_SECS = 6.0


def plant_config(out: Path, modbus_port: int, opcua_endpoint: str, mqtt_port: int,
                 processors: list[dict[str, Any]] | None = None) -> str:
    """The demo's one YAML file (also written to ``out/plant.yaml`` for the engineer to read)."""
    from hardware.casting_line import load_map

    cmap = load_map()
    cfg = {
        "version": 1,
        "agent": {"id": "demo-gateway", "data_dir": str(out / "data"), "state_dir": str(out / "state"),
                  "log_level": "warning", "shutdown_deadline_secs": 20, "http": {"listen_port": 0}},
        "core": {"batch": {"max_rows": 20000, "max_age_secs": 0.5}},
        "buffer": {"kind": "sqlite", "max_bytes": "256MiB", "when_full": "block", "fsync": "normal"},
        "sinks": [{"id": "raw", "type": "parquet", "max_file_age_secs": 5}],
        "connectors": [
            {"id": "casting-plc", "type": "modbus", "asset": CASTING_ASSET.rsplit("/", 1)[0],
             "backoff_initial_secs": 0.5, "backoff_max_secs": 5,
             "devices": [{"name": "casting-line", "transport": "tcp", "host": "127.0.0.1", "port": modbus_port,
                          "byte_order": cmap["byte_order"], "addressing": cmap["addressing"],
                          "poll_interval_secs": 1.0, "poll_groups": [{"name": "fast", "poll_interval_secs": 0.2}],
                          "request_timeout_secs": 1.0,
                          "units": [{"unit_id": cmap["unit_id"], "asset": CASTING_ASSET, "signals": cmap["signals"]}]}]},
            {"id": "mill-1", "type": "opcua_subscription", "endpoint": opcua_endpoint, "asset": MILL_ASSET,
             "publishing_interval_ms": 200, "sampling_interval_ms": 100, "backoff_initial_secs": 0.5, "backoff_max_secs": 5,
             "nodes": [{"name": n, "node_id": f"nsu=urn:axedge:sim:machine-tool;s=MachineTool1.{p}"} for n, (p, _u) in MILL_NODES.items()]},
            {"id": "sensors", "type": "mqtt", "asset": "demo-plant/foundry/casting-line-1/sensors",
             "broker": {"host": "127.0.0.1", "port": mqtt_port, "client_id": "demo-gateway-in", "session": "persistent"},
             "subscriptions": [
                 {"topic": "plant/{line}/{asset}/{signal}", "format": "json", "qos": 1,
                  "asset": "demo-plant/foundry/casting-line-1/{asset}", "units": {"vibration": "mm/s", "temperature": "Cel"}},
                 {"topic": "spBv1.0/{group}/#", "format": "sparkplug_b", "qos": 0,
                  "asset": "demo-plant/foundry/casting-line-1/{node}", "units": {"vibration": "mm/s", "temperature": "Cel"}}]},
        ],
        "processors": processors or [],
    }
    return yaml.safe_dump(cfg, sort_keys=False)


class Dashboard:
    """A live terminal view (redrawn in place on a terminal, a line every 5 s otherwise)."""

    def __init__(self, agent, phase: str, stream=sys.stdout) -> None:
        self.agent, self.phase, self.stream = agent, phase, stream
        self.tty = stream.isatty()
        self._last = (time.monotonic(), 0)

    def render(self) -> str:
        a = self.agent
        h = a.health()
        now = time.monotonic()
        t0, n0 = self._last
        rate = (h["received"] - n0) / max(1e-6, now - t0)
        self._last = (now, h["received"])
        lines = [f"axedge demo - {self.phase}   {rate:8.0f} samples/s   committed {h['committed']:,}   "
                 f"buffer {sum(h['buffer_rows'].values()):,} rows   dropped {h['dropped']}   errors {h['errors']}"]
        for name, st in h["connectors"].items():
            cm = a.metrics.connectors.get(name.split("/")[0]) or next(iter(a.metrics.connectors.values()))
            lines.append(f"  {name:<34} {st:<10} received {cm.received:>9,}  errors {sum(cm.errors.values()):>4}")
        for p in a.processors:
            st = p.stats()
            lines.append(f"  model {p.config.id:<28} {st['state']:<10} windows {st['windows_scored']:>7,}  events {st['events']}")
        for ev in list(a.events)[-4:]:
            top = ", ".join(f"{s['signal'].rsplit('/', 1)[-1]} {s['share']:.0%}" for s in ev["top_signals"][:3])
            when = time.strftime("%H:%M:%S", time.localtime(ev["start_ns"] / 1e9))
            lines.append(f"  ANOMALY {when} {ev['processor']:<14} peak {ev['peak_score']:.3g} > {ev['threshold']:.3g}   top: {top}")
        return "\n".join(lines)

    async def run(self) -> None:
        await self.agent.started.wait()
        drawn = 0
        while True:
            await asyncio.sleep(1.0 if self.tty else 5.0)
            text = self.render()
            if self.tty:
                self.stream.write(("\x1b[F\x1b[K" * drawn) + text + "\n")
                drawn = text.count("\n") + 1
            else:
                self.stream.write(text.splitlines()[0] + "\n")
            self.stream.flush()


async def _run_agent(cfg_text: str, cfg_path: Path, secs: float, phase: str, show: bool):
    from edge_agent.config import load_config_text
    from edge_agent.runtime.agent import Agent

    cfg_path.write_text(cfg_text, encoding="utf-8")
    agent = Agent(load_config_text(cfg_text, fname=str(cfg_path)), config_path=cfg_path)
    dash = asyncio.create_task(Dashboard(agent, phase).run()) if show else None
    try:
        await agent.run(secs, install_signals=True)
    finally:
        if dash:
            dash.cancel()
    return agent


def _train(data: Path, models_dir: Path, t_from_ns: int, *, validation_fraction: float = 0.2) -> list[dict[str, Any]]:
    """Curate the raw data in ``data`` (from ``t_from_ns`` on) and train one model per machine into
    ``models_dir``; returns processor sections."""
    import pyarrow.dataset as ds

    import models
    from dataset_builder.curate import build

    cur = data.parent / "learn-curated"
    build(data, cur, period="200ms", fill_limit=f"{HOLD_SECS}s", overwrite=True)
    procs = []
    for pid, asset, inputs in MODELS:
        part = cur / "curated" / f"asset={asset.replace('/', '.')}"
        if not part.exists():
            print(f"  no data for {asset}; model {pid} skipped")
            continue
        df = ds.dataset(part, partitioning="hive").to_table().to_pandas().sort_values("time")
        df = df[df["time"].astype("int64") >= t_from_ns // 1000]
        have = [c for c in inputs if c in df.columns and df[c].notna().mean() > 0.8]
        df = df[["time", *have]].dropna().rename(columns={c: f"{asset}/{c}" for c in have})
        keys = [f"{asset}/{c}" for c in have]  # full signal keys: names alone repeat across sensor nodes
        bundle = models.train(df, signals=keys, kind="auto", validation_fraction=validation_fraction)
        bundle.save(models_dir / pid)
        print(f"  model {pid}: {bundle.kind} on {len(df)} rows of {', '.join(have)} (threshold {bundle.threshold:.4g})")
        procs.append(_processor(pid, models_dir, asset))
    return procs


def _processor(pid: str, models_dir: Path, asset: str) -> dict[str, Any]:
    # 3 windows on-delay (0.6 s on the 200 ms grid) filters one-window spikes at cycle changes;
    # 15 windows (3 s) off-delay keeps one fault one event across the spindle's pauses between parts
    return {"id": pid, "type": "anomaly", "model_dir": str(models_dir / pid), "asset": asset,
            "on_delay_windows": 3, "off_delay_windows": 15, "max_input_age_secs": HOLD_SECS}


def _bundled(models_dir: Path) -> list[dict[str, Any]]:
    """Copy the bundles shipped for the simulators (``edge_agent/demo/models``, trained by
    ``python -m edge_agent.demo.pretrain``) into the run's folder; returns processor sections."""
    import shutil

    procs = []
    for pid, asset, _inputs in MODELS:
        src = BUNDLED_MODELS / pid
        if not (src / "model.json").exists():
            print(f"  no bundled model {pid}; it is skipped (train one with --train)")
            continue
        shutil.copytree(src, models_dir / pid, dirs_exist_ok=True)
        procs.append(_processor(pid, models_dir, asset))
    return procs


def _anomaly_table(agent, labels_dir: Path, path: Path) -> list[dict[str, Any]]:
    labels = []
    for f in sorted(labels_dir.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                rec["source"] = f.stem
                labels.append(rec)

    def ns(v):
        if isinstance(v, (int, float)):
            return int(v if v > 1e15 else v * 1e9)
        import pandas as pd

        return int(pd.Timestamp(v).value)

    machine = {"casting": ("casting-line",), "mill": ("machine-tool",), "sensor0": ("sensors",)}
    rows = []
    for ev in agent.events:
        mine = [lb for lb in labels if lb["source"] in machine.get(ev["processor"], (lb["source"],))]
        # a detection is an event that starts while the fault is on (not an alarm already running)
        match = [f"{lb['source']}:{lb['kind']}" for lb in mine
                 if ns(lb["start"]) - 1e9 <= ev["start_ns"] <= ns(lb.get("end") or lb["start"])]
        rows.append({"model": f"{ev['processor']} ({ev['model']})", "start": time.strftime("%H:%M:%S", time.localtime(ev["start_ns"] / 1e9)),
                     "end": time.strftime("%H:%M:%S", time.localtime(ev["end_ns"] / 1e9)),
                     "peak_score": round(ev["peak_score"], 4), "threshold": round(ev["threshold"], 4),
                     "top_signals": "; ".join(s["signal"].rsplit("/", 1)[-1] for s in ev["top_signals"]),
                     "matches_injected_fault": "; ".join(match)})
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["model", "start", "end", "peak_score", "threshold", "top_signals", "matches_injected_fault"])
        w.writeheader()
        w.writerows(rows)
    return rows


@contextlib.asynccontextmanager
async def simulated_plant(labels: Path, seed: int):
    """The three simulated machines and the embedded broker (no faults until injected)."""
    from hardware.broker import EmbeddedBroker
    from hardware.casting_line import CastingLineSim
    from hardware.machine_tool import MachineToolSim
    from hardware.sensors import SensorSim

    labels.mkdir(parents=True, exist_ok=True)
    async with CastingLineSim(port=0, labels=labels / "casting-line.jsonl", seed=seed, speed=CASTING_SPEED) as cast, \
            MachineToolSim(port=0, labels_path=labels / "machine-tool.jsonl", seed=seed, cycle_secs=MILL_CYCLE_SECS) as mill, \
            EmbeddedBroker(port=0) as broker:
        sensors = SensorSim(broker.host, broker.port, labels=labels / "sensors.jsonl", faults="none", seed=seed)
        sensors.start()
        try:
            yield cast, mill, broker, sensors
        finally:
            sensors.stop()


async def run_plant(out: Path, duration_secs: float, seed: int = 1, show: bool = True, train: bool = False) -> dict[str, Any]:
    """The demo. By default the models bundled for the simulators score live from the start and
    the whole run is watched; with ``train`` the first 55 % is a learning phase and the models are
    trained on it (short learning gives weaker models, see docs/anomaly-benchmarks.md)."""
    out = out.resolve()
    labels = out / "labels"
    models_dir = out / "models"
    if train:
        learn = max(15.0, 0.55 * duration_secs)
        watch = max(10.0, duration_secs - learn)
        fault_in = 0.35 * watch  # after the watch phase starts: the models see normal data first
        fault_len = max(6.0, 0.45 * watch)
    else:
        watch = max(10.0, duration_secs)
        fault_in = 0.3 * watch
        fault_len = max(6.0, 0.35 * watch)
    t_start_ns = time.time_ns()
    async with simulated_plant(labels, seed) as (cast, mill, broker, sensors):
        cfg_path = out / "plant.yaml"
        where = f"(Modbus :{cast.port}, OPC UA {mill.endpoint}, MQTT :{broker.port})"
        if train:
            print(f"phase 1/4 learn: {learn:.0f} s of normal operation {where}", flush=True)
            text = plant_config(out, cast.port, mill.endpoint, broker.port)
            agent = await _run_agent(text, cfg_path, learn, "learning", show)
            if agent.stop_requested:  # Ctrl-C: keep what was collected, skip to the report
                print("stopped during learning: building the datasets from what was collected", flush=True)
                return await asyncio.to_thread(_finish, out, agent)
            print("phase 2/4 train: curating the learning phase and training one model per machine", flush=True)
            procs = await asyncio.to_thread(_train, out / "data", models_dir, t_start_ns + int(3e9))
        else:
            print(f"phase 1/3 load: the anomaly models bundled for the simulators {where}", flush=True)
            procs = _bundled(models_dir)
        step = "3/4" if train else "2/3"
        print(f"phase {step} watch: {watch:.0f} s with live scoring; faults are injected after {fault_in:.0f} s "
              f"for {fault_len:.0f} s", flush=True)
        text = plant_config(out, cast.port, mill.endpoint, broker.port, processors=procs)
        loop = asyncio.get_running_loop()
        faults = [
            lambda: cast.inject("melt_temperature_drop", fault_len),
            lambda: mill.inject("bearing_fault", fault_len, 1.0, source="schedule"),
            lambda: sensors.inject("noise_burst", 0, fault_len, signal="vibration"),
        ]
        handles = [loop.call_later(fault_in + i, inject) for i, inject in enumerate(faults)]
        try:
            agent = await _run_agent(text, cfg_path, watch, "watching", show)
        finally:
            for h in handles:
                h.cancel()
    print(f"phase {'4/4' if train else '3/3'} report: curated dataset, report and anomaly table", flush=True)
    return await asyncio.to_thread(_finish, out, agent)


def _finish(out: Path, agent) -> dict[str, Any]:
    from dataset_builder.curate import build
    from dataset_builder.report import write as write_report

    res = build(out / "data", out / "curated", period="1s", overwrite=True, events=sorted((out / "labels").glob("*.jsonl")))
    report = write_report(out / "curated", out / "report.html")
    table = _anomaly_table(agent, out / "labels", out / "anomalies.csv")
    return {"raw": str(out / "data"), "curated": str(out / "curated"), "curated_rows": res.rows,
            "report": str(report), "anomalies": str(out / "anomalies.csv"), "events": table,
            "models": str(out / "models"), "labels": str(out / "labels")}
