"""Simulated sensor nodes (JSON + Sparkplug B) -> agent (examples/sensors.yaml) -> Parquet, over a
real Mosquitto; faults show up as quarantined payloads, stuck values and rebirth requests; the
embedded demo broker carries the same traffic."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import yaml

from edge_agent.config import load_config_text
from edge_agent.runtime.agent import Agent
from hardware.sensors import SensorSim
from tests._mosquitto import mosquitto  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, port: int) -> str:
    cfg = yaml.safe_load((ROOT / "examples" / "sensors.yaml").read_text())
    cfg["agent"].update(data_dir=str(tmp_path / "data"), state_dir=str(tmp_path / "state"), http={"enabled": False})
    cfg["core"]["batch"]["max_age_secs"] = 0.1
    cfg["sinks"][0]["max_file_age_secs"] = 0.5
    cfg["connectors"][0]["broker"]["port"] = port
    cfg["connectors"][0]["sparkplug"] = {"rebirth_min_interval_secs": 0.5}
    return yaml.safe_dump(cfg)


async def test_sensor_nodes_into_dataset_with_faults(mosquitto, tmp_path):
    agent = Agent(load_config_text(_config(tmp_path, mosquitto.plain_port)))
    task = asyncio.create_task(agent.run(duration_secs=6))
    await agent.started.wait()
    await asyncio.sleep(0.5)
    sim = SensorSim("127.0.0.1", mosquitto.plain_port, nodes=4, rate_hz=20, seed=1, faults="none",
                    labels=tmp_path / "labels.jsonl")
    await asyncio.to_thread(sim.start)
    await asyncio.sleep(1.0)
    sim.inject("malformed_payload", 0, 0.5)  # JSON node
    sim.inject("sequence_gap", 1, 0)  # Sparkplug node: seq skips -> rebirth request -> new NBIRTH
    sim.inject("stuck_value", 2, 1.5, signal="temperature")
    await asyncio.sleep(2.5)
    await asyncio.to_thread(sim.stop)
    await task
    t = ds.dataset(tmp_path / "data" / "raw", partitioning="hive").to_table()
    signals = set(t.column("signal").cast(pa.string()).to_pylist())
    assert signals >= {f"demo/sensors/line1/sensor{i}/{s}" for i in range(4) for s in ("vibration", "temperature")}
    assert t.num_rows > 4 * 2 * 20 * 2  # a few seconds at 20 Hz, 8 signals
    labels = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert {lb["kind"] for lb in labels} == {"malformed_payload", "sequence_gap", "stuck_value"}
    qfile = tmp_path / "state" / "quarantine" / "sensors.jsonl"
    reasons = {json.loads(x)["reason"] for x in qfile.read_text().splitlines()}
    assert "malformed_json" in reasons
    m = agent.metrics.connectors["sensors"]
    assert m.errors.get("seq_gap", 0) >= 1 and m.events.get("rebirth_requested", 0) >= 1
    # the stuck temperature repeats one value during the fault
    stuck = [lb for lb in labels if lb["kind"] == "stuck_value"][0]
    rows = t.filter(pa.compute.equal(t.column("signal").cast(pa.string()), "demo/sensors/line1/sensor2/temperature"))
    times = rows.column("time").cast(pa.int64()).to_pylist()
    vals = rows.column("value").to_pylist()
    during = {v for tm, v in zip(times, vals, strict=True) if stuck["start_ns"] // 1000 + 100_000 < tm < stuck["end_ns"] // 1000 - 100_000}
    assert len(during) == 1
    spec = {r.key: r.spec for r in agent.catalog}
    assert spec["demo/sensors/line1/sensor1/vibration"].unit == "mm/s"


async def test_embedded_broker_carries_sensor_traffic(tmp_path):
    from hardware.broker import EmbeddedBroker

    async with EmbeddedBroker() as b:
        agent = Agent(load_config_text(_config(tmp_path, b.port)))
        task = asyncio.create_task(agent.run(duration_secs=3))
        await agent.started.wait()
        await asyncio.sleep(0.5)
        sim = SensorSim(b.host, b.port, nodes=2, rate_hz=10, faults="none")
        await asyncio.to_thread(sim.start)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(sim.stop)
        res = await task
    assert res.received > 20
    assert {r.key for r in agent.catalog} >= {"demo/sensors/line1/sensor0/vibration", "demo/sensors/line1/sensor1/temperature"}
