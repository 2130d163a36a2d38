"""Interoperability with a server nobody here wrote: node-opcua (npm) loading the official DI,
IA, Machinery and MachineTool nodesets (node-opcua-nodesets) with one instantiated MachineTool.
Discovery must find the machine tool; the connector must read and subscribe to it."""

from __future__ import annotations

import asyncio
import json
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from connectors.base import ConnectorContext
from connectors.opcua.connector import build_polling, build_subscription
from connectors.opcua.discover import main as discover
from edge_agent.config import load_config
from edge_agent.core.channel import BoundedChannel
from edge_agent.signals import DataType, SignalCatalog

HERE = Path(__file__).resolve().parent
NS_MT = "http://opcfoundation.org/UA/MachineTool/"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="session")
def node_modules():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the interop tests (Node 20)")
    if not (HERE / "node_modules" / "node-opcua").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(HERE)], check=True, cwd=HERE, timeout=900)
    return HERE / "node_modules"


@pytest.fixture(scope="module")
def node_server(node_modules, tmp_path_factory):
    d = tmp_path_factory.mktemp("node-opcua")
    err = (d / "server.log").open("wb")
    proc = subprocess.Popen(["node", str(HERE / "server.js"), "0", str(d / "pki")], stdout=subprocess.PIPE, stderr=err,
                            text=True, cwd=HERE)
    try:
        deadline, info = time.monotonic() + 300, None
        while info is None and time.monotonic() < deadline:  # node-opcua may log to stdout before the JSON line
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else ""
            if not line:
                break
            if line.startswith('{"port"'):
                info = json.loads(line)
        assert info, f"node-opcua server did not start: {(d / 'server.log').read_text()[-2000:]}"
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def discovered(node_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("disc") / "node.yaml"
    rc = discover([node_server["endpoint"], "--out", str(out), "--asset", "plant1/machining/line2", "--id", "mill42",
                   "--root", "Objects/Machines", "--timeout-secs", "30"])
    assert rc == 0
    return out


def test_discovery_finds_the_machine_tool_of_the_official_nodesets(discovered):
    text = discovered.read_text()
    assert "umati machine tools: Mill42" in text
    [section] = load_config(discovered).connectors
    nodes = {(n.asset, n.name): n for n in section.nodes}
    mt = "plant1/machining/line2/Mill42"
    override = nodes[(mt, "Monitoring.Spindle.Override")]
    assert override.semantic_id == f"{NS_MT}#SpindleMonitoringType/Override"
    assert override.dtype is DataType.float64 and override.unit == "%"  # EngineeringUnits from the nodeset
    assert nodes[(mt, "Monitoring.Channel1.FeedOverride")].semantic_id == f"{NS_MT}#ChannelMonitoringType/FeedOverride"
    assert nodes[(mt, "Identification.Manufacturer")].dtype is DataType.string
    assert nodes[(mt, "Identification.SerialNumber")].semantic_id == f"{NS_MT}#MachineToolIdentificationType/SerialNumber"
    assert any(name.startswith("Production.") for asset, name in nodes if asset == mt)
    assert all(n.node_id.startswith(("nsu=", "i=")) for n in section.nodes)


async def test_polling_and_subscription_against_node_opcua(discovered, tmp_path):
    [section] = load_config(discovered).connectors
    keep = {"Monitoring.Spindle.Override", "Monitoring.Channel1.FeedOverride", "Monitoring.Spindle.IsRotating",
            "Identification.Manufacturer", "Identification.SerialNumber"}
    nodes = [n.model_dump(exclude_none=True) for n in section.nodes if n.name in keep]
    assert len(nodes) == len(keep)
    base = {"id": section.id, "asset": section.asset, "endpoint": section.endpoint}
    ch = BoundedChannel(10_000, 1_000_000)
    ctx = ConnectorContext("mill42", SignalCatalog(), ch.send, state_dir=tmp_path / "state")

    from connectors.opcua.config import OpcUaPollingConfig, OpcUaSubscriptionConfig

    [poller] = build_polling(OpcUaPollingConfig(type="opcua_polling", nodes=nodes, **base), ctx)
    await poller.connect()
    spec = ctx.catalog.by_key("plant1/machining/line2/Mill42/Monitoring.Spindle.Override").spec
    assert spec.unit == "%" and spec.extra["eu_range"] == [0.0, 200.0] and spec.extra["opcua_type"] == "Double"
    await poller.poll()
    await poller.aclose()
    texts = {}
    while (c := ch.recv_nowait()) is not None:
        for k in range(len(c)):
            if c.text is not None and c.text[k] is not None:
                texts[ctx.catalog.get(int(c.signal_id[k])).spec.name] = c.text[k]
    assert texts["Identification.Manufacturer"] == "Interop Werke" and texts["Identification.SerialNumber"] == "NODE-0042"

    cfg = OpcUaSubscriptionConfig(type="opcua_subscription", nodes=nodes, publishing_interval_ms=100, sampling_interval_ms=50, **base)
    [unit] = build_subscription(cfg, ctx)
    await unit.connect()
    task = asyncio.create_task(unit.run())
    values: dict[str, set[float]] = {}
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 20 and len(values.get("Monitoring.Spindle.Override", ())) < 3:
            c = await ch.recv(timeout=1.0)
            if c is None:
                continue
            for k in range(len(c)):
                name = ctx.catalog.get(int(c.signal_id[k])).spec.name
                assert c.quality[k] == 0
                if name == "Monitoring.Spindle.Override":  # changing values carry the server's source time
                    assert abs(int(c.source_time_ns[k]) - time.time_ns()) < 60e9
                values.setdefault(name, set()).add(float(c.value[k]))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await unit.aclose()
    assert len(values["Monitoring.Spindle.Override"]) >= 3 and values["Monitoring.Spindle.Override"] <= set(range(100, 110))
    assert values["Monitoring.Channel1.FeedOverride"] <= set(range(90, 95))
