"""The Modbus connector against an independent Modbus TCP server (npm ``modbus-serial``): the
same case folders as the pymodbus HIL tests, served by code nobody here wrote."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from connectors.base import ConnectorContext
from connectors.modbus.connector import build
from dataset_builder.format import Quality
from edge_agent.config import load_config_text
from edge_agent.core.channel import BoundedChannel
from edge_agent.signals import SignalCatalog
from tests._modbus import poll_once_by_name

HERE = Path(__file__).resolve().parent
CASES = HERE.parents[1] / "connectors" / "modbus" / "cases"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


@pytest.fixture(scope="session")
def node_server_js():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the interop tests (Node 20)")
    if not (HERE / "node_modules" / "modbus-serial").is_dir():
        # optional deps skipped: serialport needs native builds and is not used by ServerTCP
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--omit=optional", "--prefix", str(HERE)],
                       check=True, capture_output=True, timeout=300)
    return HERE / "server.js"


@pytest.fixture
def serve(node_server_js):
    procs = []

    def start(registers: Path) -> int:
        p = subprocess.Popen(["node", str(node_server_js), str(registers)], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert line, "modbus-serial server did not start"
        return json.loads(line)["port"]

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


@pytest.mark.parametrize("conc", [1, 3], ids=["sequential", "3-in-flight"])
@pytest.mark.parametrize("name", CASE_NAMES)
async def test_case_against_modbus_serial(name, serve, conc):
    folder = CASES / name
    port = serve(folder / "registers.json")
    device = yaml.safe_load((folder / "config.yaml").read_text())
    device.update(host="127.0.0.1", port=port, request_timeout_secs=2.0, max_concurrent_requests=conc)
    section = {"id": "interop", "type": "modbus", "asset": "test/interop", "devices": [device]}
    cfg = load_config_text(yaml.safe_dump({"connectors": [section]}), fname="interop.yaml").connectors[0]
    ch = BoundedChannel(1000, 1_000_000)
    ctx = ConnectorContext("interop", SignalCatalog(), ch.send)
    (unit,) = build(cfg, ctx)
    got = await poll_once_by_name(unit, ctx, ch)
    expected = [json.loads(x) for x in (folder / "expected.jsonl").read_text().splitlines() if x.strip()]
    for e in expected:
        if "requests" in e:
            assert unit.requests == e["requests"]
            continue
        value, text, quality, valid = got.pop(e["signal"])
        if "quality" in e:
            assert quality == Quality[e["quality"]] and not valid, e
        elif "text" in e:
            assert (text, quality) == (e["text"], Quality.GOOD), e
        else:
            assert (value, quality, valid) == (e["value"], Quality.GOOD, True), e
    assert not got
