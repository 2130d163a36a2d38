"""examples/machine-tool.yaml end to end: simulated machine tool -> agent -> Parquet dataset."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from edge_agent.config import load_config_text
from edge_agent.runtime.agent import Agent
from hardware.machine_tool import MachineToolThread

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


async def test_machine_tool_example_writes_a_dataset_with_units_quality_and_server_time(tmp_path):
    with MachineToolThread(update_hz=10, cycle_secs=3) as sim:
        text = (ROOT / "examples" / "machine-tool.yaml").read_text()
        text = text.replace("opc.tcp://127.0.0.1:4840", sim.endpoint)
        text = text.replace("./axedge-data", str(tmp_path / "data")).replace("./axedge-state", str(tmp_path / "state"))
        text = text.replace("agent:\n", "agent:\n  http: {enabled: false}\n", 1)
        text = text.replace("poll_interval_secs: 30", "poll_interval_secs: 1")
        cfg = load_config_text(text)
        agent = Agent(cfg)
        task = asyncio.create_task(agent.run())
        await agent.started.wait()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while agent.metrics.total_received() < 200 and loop.time() - t0 < 40:
            await asyncio.sleep(0.2)
        agent.request_stop()
        res = await task
    assert res.received >= 200 and res.committed == res.received and res.dropped == 0
    assert set(res.connectors.values()) <= {"stopped"}
    df = ds.dataset(tmp_path / "data" / "raw", partitioning="hive").to_table().to_pandas()
    signals = set(df["signal"].astype(str))
    base = "plant1/machining/line1/mill01/"
    for name in ("spindle_speed", "spindle_override", "coolant_temperature", "active_program", "program_state",
                 "part_counter", "power_on_hours", "serial_number"):
        assert base + name in signals, name
    prog = df[df["signal"] == base + "active_program"]
    assert set(prog["value_text"]) == {"O1001_BRACKET"} and prog["value"].isna().all()
    speed = df[df["signal"] == base + "spindle_speed"]
    assert (speed["quality"] == 0).all() and speed["server_time"].notna().all()
    assert speed["value"].max() > 7000  # the spindle turns during the cycle
    catalog = {s.key: s.spec for s in agent.catalog}
    assert catalog[base + "spindle_speed"].unit == "/min"
    assert catalog[base + "coolant_temperature"].unit == "Cel"
    assert catalog[base + "spindle_override"].extra["eu_range"] == [50.0, 120.0]
