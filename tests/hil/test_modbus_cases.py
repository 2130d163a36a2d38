"""Decoding case folders (tests/connectors/modbus/cases/*) against a real pymodbus server, over
Modbus TCP, RTU framed over TCP, and RTU on a serial line (a pseudo-terminal pair)."""

import contextlib
import json
import os
import select
import threading
import tty
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
from hardware._modbus_server import ModbusDeviceServer, RegisterImage

CASES = Path(__file__).resolve().parents[1] / "connectors" / "modbus" / "cases"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


def load_image(path: Path) -> tuple[int, RegisterImage]:
    data = json.loads(path.read_text())
    image = RegisterImage()
    for table, blocks in data.items():
        if table == "unit_id":
            continue
        for addr, values in blocks.items():
            a = int(addr)
            image.declare(table, a, len(values))
            if table in ("holding", "input"):
                image.set_words(table, a, [int(w, 16) for w in values])
            else:
                image.set_bits(table, a, [bool(b) for b in values])
    return data["unit_id"], image


@contextlib.contextmanager
def null_modem():
    """Two pseudo-terminals joined back to back, like a null-modem cable: (server path, client path)."""
    ma, sa = os.openpty()
    mb, sb = os.openpty()
    for fd in (sa, sb):
        tty.setraw(fd)
    stop = threading.Event()

    def pump():
        peer = {ma: mb, mb: ma}
        while not stop.is_set():
            ready, _, _ = select.select([ma, mb], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                os.write(peer[fd], data)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        yield os.ttyname(sa), os.ttyname(sb)
    finally:
        stop.set()
        t.join()
        for fd in (ma, sa, mb, sb):
            os.close(fd)


async def run_case(name: str, transport: str, endpoint: dict, server_kwargs: dict):
    folder = CASES / name
    unit_id, image = load_image(folder / "registers.json")
    device = yaml.safe_load((folder / "config.yaml").read_text())
    device.update(transport=transport, request_timeout_secs=1.0, **endpoint)
    section = {"id": "case", "type": "modbus", "asset": "test/cases", "devices": [device]}
    cfg = load_config_text(yaml.safe_dump({"connectors": [section]}), fname=str(folder / "config.yaml")).connectors[0]
    expected = [json.loads(x) for x in (folder / "expected.jsonl").read_text().splitlines() if x.strip()]

    ch = BoundedChannel(1000, 1_000_000)
    ctx = ConnectorContext("case", SignalCatalog(), ch.send)
    server = ModbusDeviceServer({unit_id: image}, transport=transport, **server_kwargs)
    async with server:
        if transport != "rtu":
            endpoint["port"] = server.port
            cfg = cfg.model_copy(update={"devices": [cfg.devices[0].model_copy(update={"port": server.port})]})
        (unit,) = build(cfg, ctx)
        got = await poll_once_by_name(unit, ctx, ch)
    signal_rows = [e for e in expected if "signal" in e]
    assert set(got) == {e["signal"] for e in signal_rows}
    for e in signal_rows:
        value, text, quality, valid = got[e["signal"]]
        if "quality" in e:
            assert quality == Quality[e["quality"]] and not valid, (e, got[e["signal"]])
        elif "text" in e:
            assert (text, quality) == (e["text"], Quality.GOOD), e
        else:
            assert (value, quality, valid) == (e["value"], Quality.GOOD, True), e
    for e in expected:
        if "requests" in e:
            assert unit.requests == e["requests"]


@pytest.mark.parametrize("name", CASE_NAMES)
async def test_case_over_tcp(name):
    await run_case(name, "tcp", {"host": "127.0.0.1", "port": 502}, {"host": "127.0.0.1", "port": 0})


@pytest.mark.parametrize("name", CASE_NAMES)
async def test_case_rtu_over_tcp(name):
    await run_case(name, "rtu_over_tcp", {"host": "127.0.0.1", "port": 502}, {"host": "127.0.0.1", "port": 0})


@pytest.mark.parametrize("name", ["float32_all_byte_orders", "bits_coils_bcd", "strings", "illegal_address_isolated", "unit_id_17"])
async def test_case_rtu_on_a_serial_line(name):
    # parity none: Linux pseudo-terminals reject parity settings (EINVAL); framing is the same
    with null_modem() as (server_tty, client_tty):
        await run_case(
            name, "rtu", {"serial_port": client_tty, "baudrate": 115200, "parity": "none"},
            {"serial_port": server_tty, "baudrate": 115200, "parity": "N"},
        )
