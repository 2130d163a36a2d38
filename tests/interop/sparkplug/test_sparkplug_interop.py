"""Sparkplug B interoperability with code nobody here wrote: Eclipse Tahu's JavaScript edge node
(``sparkplug-client``) feeds the MQTT connector, and Tahu's decoder (``sparkplug-payload``)
reads what the uplink publishes. Both over a real Mosquitto."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.base import ConnectorContext
from connectors.mqtt.config import MqttConfig
from connectors.mqtt.connector import build
from connectors.mqtt.sparkplug_codec import Metric, SpDataType, encode_payload
from dataset_builder.format import Quality
from edge_agent.core.channel import BoundedChannel
from edge_agent.core.chunk import SampleChunk, chunks_to_batch
from edge_agent.signals import DataType, SignalCatalog, SignalSpec
from edge_agent.sinks.base import SinkContext
from edge_agent.sinks.mqtt_uplink import MqttUplinkConfig
from edge_agent.sinks.mqtt_uplink import build as build_uplink
from tests._mosquitto import USERS, mosquitto  # noqa: F401

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def tahu() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the interop tests (Node 20)")
    if not (HERE / "node_modules" / "sparkplug-client").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(HERE)], check=True,
                       capture_output=True, timeout=300)
    return HERE


def _ctx(cfg: MqttConfig):
    catalog = SignalCatalog()
    channel = BoundedChannel(10_000, 10_000_000)
    quarantined: list = []
    ctx = ConnectorContext(connector_id=cfg.id, catalog=catalog, send=channel.send,
                           quarantine_sink=lambda cid, raw, reason, meta: quarantined.append(reason))
    return ctx, catalog, channel, quarantined


async def _drain(channel: BoundedChannel, catalog: SignalCatalog, rows: list, until, timeout: float = 15.0) -> None:
    t_end = time.monotonic() + timeout
    while not until() and time.monotonic() < t_end:
        chunk = await channel.recv(timeout=0.2)
        if chunk is None:
            continue
        for i in range(len(chunk)):
            valid = chunk.valid is None or bool(chunk.valid[i])
            rows.append((catalog.get(int(chunk.signal_id[i])).key, int(chunk.source_time_ns[i]),
                         float(chunk.value[i]) if valid else None, chunk.text[i] if chunk.text is not None else None,
                         int(chunk.quality[i])))
        if chunk.on_durable:
            chunk.on_durable()


async def test_tahu_edge_node_feeds_the_connector(tahu, mosquitto):
    n = 50
    cfg = MqttConfig.model_validate({
        "id": "tahu", "type": "mqtt", "asset": "site",
        "broker": {"port": mosquitto.plain_port, "client_id": "t-tahu", "session": "clean"},
        "subscriptions": [{"topic": "spBv1.0/{group}/#", "format": "sparkplug_b", "qos": 0}],
        "sparkplug": {"rebirth_min_interval_secs": 0},
    })
    ctx, catalog, channel, quarantined = _ctx(cfg)
    unit = build(cfg, ctx)[0]
    await unit.connect()
    task = asyncio.create_task(unit.run())
    node = subprocess.Popen(["node", str(tahu / "edge_node.js"), f"mqtt://127.0.0.1:{mosquitto.auth_port}", "sensor",
                             USERS["sensor"], "G", "tahu1", str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(node.stdout.readline, "")), daemon=True)
    reader.start()
    rows: list = []
    try:
        births = 8
        await _drain(channel, catalog, rows, lambda: len(rows) >= births + 3 * n)
        # an NDATA with an alias Tahu never declared -> quarantined, rebirth requested, Tahu re-births
        c = paho.Client(CallbackAPIVersion.VERSION2)
        c.connect("127.0.0.1", mosquitto.plain_port)
        c.loop_start()
        bad = encode_payload(int(time.time() * 1000), None, [Metric(alias=999, datatype=SpDataType.Double, value=1.0)])
        c.publish("spBv1.0/G/NDATA/tahu1", bad, qos=1).wait_for_publish(5)
        await _drain(channel, catalog, rows, lambda: "REBIRTH\n" in lines and len(rows) >= 2 * births + 3 * n)
        c.loop_stop()
    finally:
        node.stdin.close()
        node.wait(10)
        await _drain(channel, catalog, rows, lambda: any(r[4] == Quality.BAD_NOT_CONNECTED for r in rows), timeout=5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await unit.aclose()
    assert "SENT\n" in lines and "REBIRTH\n" in lines, node.stderr.read()[-2000:]
    by = {}
    for key, ts, val, text, q in rows:
        by.setdefault(key, []).append((ts, val, text, q))
    first = {k: v[0] for k, v in by.items()}
    assert first["site/G/tahu1/Count"][1] == -7.0
    assert first["site/G/tahu1/Big"][1] == -5_000_000_000.0
    assert first["site/G/tahu1/Flag"][1] == 1.0
    assert first["site/G/tahu1/Mode"][1:3] == (None, "AUTO")
    assert first["site/G/tahu1/Level"][1] == 1.5
    assert first["site/G/tahu1/Counter32"][1] == 4_000_000_000.0
    assert first["site/G/tahu1/Pump1/Inputs.Speed"][1] == 100.0
    t0 = 1_700_000_000_000
    temps = [(ts, v) for ts, v, _, q in by["site/G/tahu1/Temperature"] if t0 * 10**6 <= ts < (t0 + n) * 10**6]
    assert temps == [((t0 + i) * 10**6, i + 0.25) for i in range(n)]
    assert [v for ts, v, _, q in by["site/G/tahu1/Count"] if ts >= t0 * 10**6 and ts < (t0 + n) * 10**6] == [float(-i) for i in range(n)]
    assert [v for ts, v, _, q in by["site/G/tahu1/Pump1/Inputs.Speed"] if t0 * 10**6 <= ts < (t0 + n) * 10**6] == [1000.0 + i for i in range(n)]
    assert catalog.by_key("site/G/tahu1/Count").spec.dtype is DataType.int32
    assert catalog.by_key("site/G/tahu1/Counter32").spec.dtype is DataType.uint32
    assert "unknown_alias" in quarantined
    assert ctx.metrics.errors.get("seq_gap", 0) == 0  # Tahu's seq numbering is followed without false gaps
    stale = {r[0] for r in rows if r[4] == Quality.BAD_NOT_CONNECTED}
    assert "site/G/tahu1/Temperature" in stale  # Tahu's NDEATH on stop


async def test_tahu_decodes_the_uplink(tahu, mosquitto, tmp_path):
    received: list[tuple[str, bytes]] = []
    done = threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: (received.append((m.topic, m.payload)), len(received) >= 2 and done.set())
    sub.connect("127.0.0.1", mosquitto.plain_port)
    sub.loop_start()
    sub.subscribe("spBv1.0/acme/+/gw9", qos=1)
    time.sleep(0.3)
    cat = SignalCatalog()
    t = cat.register(SignalSpec(name="temp", asset="acme/line1/oven", unit="Cel", connector="c"))
    m = cat.register(SignalSpec(name="mode", asset="acme/line1/oven", dtype=DataType.string, connector="c"))
    sink = build_uplink(MqttUplinkConfig.model_validate({"type": "mqtt_uplink", "uns": None, "sparkplug": {"group_id": "acme"},
                                                        "broker": {"port": mosquitto.plain_port, "session": "clean"}}),
                        SinkContext(sink_id="up", catalog=cat, agent_id="gw9", state_dir=tmp_path))
    await sink.open()
    ts0 = 1_700_000_000_000
    chunk = SampleChunk.from_values([t, t, m], [20.5, -3.25, float("nan")],
                                    source_time_ns=np.array([ts0, ts0 + 1, ts0 + 2], dtype=np.int64) * 1_000_000)
    chunk.text = [None, None, "AUTO"]
    chunk.valid = np.array([True, True, False])
    await sink.write("b", 1, chunks_to_batch([chunk]))
    await sink.commit()
    assert done.wait(10)
    await sink.aclose()
    sub.loop_stop()
    stdin = "".join(json.dumps({"topic": tp, "b64": base64.b64encode(p).decode()}) + "\n" for tp, p in received[:2])
    out = subprocess.run(["node", str(tahu / "decode.js")], input=stdin, capture_output=True, text=True, timeout=30, check=True)
    decoded = [json.loads(x) for x in out.stdout.splitlines()]
    birth, data = decoded[0]["payload"], decoded[1]["payload"]
    assert decoded[0]["topic"] == "spBv1.0/acme/NBIRTH/gw9" and birth["seq"] == 0
    bm = {x["name"]: x for x in birth["metrics"]}
    assert bm["bdSeq"]["value"] == 0 and bm["Node Control/Rebirth"]["value"] is False
    assert bm["acme/line1/oven/temp"]["alias"] == t and bm["acme/line1/oven/temp"]["type"] == "Double"
    assert bm["acme/line1/oven/mode"]["type"] == "String"
    assert data["seq"] == 1
    assert [(x["alias"], x["timestamp"], x["value"], x["type"]) for x in data["metrics"]] == [
        (t, ts0, 20.5, "Double"), (t, ts0 + 1, -3.25, "Double"), (m, ts0 + 2, "AUTO", "String")]

