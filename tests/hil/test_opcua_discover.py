"""`axedge discover opcua` against the simulated machine tool: the umati machine is found and
mapped into the asset hierarchy, and the written file runs as-is."""

from __future__ import annotations

import asyncio

import pytest

from connectors.base import ConnectorContext
from connectors.opcua.connector import build_polling
from connectors.opcua.discover import main
from edge_agent.config import load_config, load_config_text
from edge_agent.core.channel import BoundedChannel
from edge_agent.signals import DataType, SignalCatalog
from hardware.machine_tool import NS_SIM, MachineToolThread

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sim():
    with MachineToolThread(bulk_nodes=150) as t:
        yield t


def test_discovery_finds_the_umati_machine_and_writes_a_valid_config(sim, tmp_path, capsys):
    out = tmp_path / "mt.yaml"
    assert main([sim.endpoint, "--out", str(out), "--asset", "plant1/machining/line1", "--id", "mill01",
                 "--type", "opcua_polling"]) == 0
    err = capsys.readouterr().err
    assert "depth" in err and "wrote" in err  # progress on stderr
    cfg = load_config(out)
    [section] = cfg.connectors
    assert section.id == "mill01" and section.type == "opcua_polling"
    nodes = {(n.asset, n.name): n for n in section.nodes}
    mt = "plant1/machining/line1/MachineTool1"
    override = nodes[(mt, "Monitoring.Spindle.Override")]
    assert override.node_id == f"nsu={NS_SIM};s=MachineTool1.Monitoring/Spindle/Override"
    assert override.unit == "%" and override.dtype is DataType.float64
    assert override.semantic_id.startswith("http://opcfoundation.org/UA/MachineTool/#")
    assert nodes[(mt, "Monitoring.Coolant.Temperature")].unit == "Cel"
    assert nodes[(mt, "Production.ActiveProgram.Name")].dtype is DataType.string
    assert nodes[(mt, "Identification.SerialNumber")].dtype is DataType.string
    assert (mt, "Notification.Messages.LastMessage") in nodes
    assert nodes[(mt, "Monitoring.Spindle.IsRotating")].dtype is DataType.bool
    # the bulk folder is not a machine: it keeps its own asset
    assert nodes[("plant1/machining/line1/Bulk", "Group1.Node120")].dtype is DataType.float64
    assert not any(n.asset.endswith("/Server") for n in section.nodes)
    assert "umati machine tools: MachineTool1" in out.read_text()


async def test_generated_config_runs_as_is(sim, tmp_path):
    out = tmp_path / "mt.yaml"
    rc = await asyncio.to_thread(main, [sim.endpoint, "--out", str(out), "--root", "Objects/Machines", "--id", "mill01", "--type", "opcua_polling"])
    assert rc == 0
    [section] = load_config_text(out.read_text()).connectors
    ch = BoundedChannel(10_000, 1_000_000)
    ctx = ConnectorContext("mill01", SignalCatalog(), ch.send, state_dir=tmp_path / "state")
    [unit] = build_polling(section, ctx)
    await unit.connect()
    await unit.poll()
    await unit.aclose()
    rows = 0
    while (c := ch.recv_nowait()) is not None:
        assert (c.quality == 0).all()
        rows += len(c)
    assert rows == len(section.nodes) and ctx.metrics.gaps == 0


def test_depth_limit_and_missing_root(sim, tmp_path, capsys):
    out = tmp_path / "shallow.yaml"
    assert main([sim.endpoint, "--out", str(out), "--root", "Objects/Machines/MachineTool1/Monitoring", "--max-depth", "2"]) == 0
    nodes = {(n.asset, n.name) for n in load_config(out).connectors[0].nodes}
    assert ("site/area/line/Spindle", "Override") in nodes  # top-level objects below the root become assets
    assert not any("SignalColor" in name for _, name in nodes)  # Stacklight/Lamp0/SignalColor is 3 levels down
    assert main([sim.endpoint, "--out", str(tmp_path / "big.yaml"), "--max-nodes", "60", "--concurrency", "2"]) == 0
    assert "stopped at --max-nodes 60" in capsys.readouterr().err
    assert 0 < len(load_config(tmp_path / "big.yaml").connectors[0].nodes) < 60
    assert main([sim.endpoint, "--out", str(tmp_path / "x.yaml"), "--root", "Objects/Nowhere"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["opc.tcp://127.0.0.1:1", "--out", str(tmp_path / "y.yaml"), "--timeout-secs", "2"]) == 1
