"""The MQTT uplink sink against a real Mosquitto: UNS JSON, Sparkplug B edge node (births,
aliases, seq, bdSeq, rebirth on NCMD, NDEATH), ACL refusal, and store-and-forward through the
agent while the broker is away."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import paho.mqtt.client as paho
import pyarrow as pa
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from connectors.mqtt.sparkplug_codec import Metric, SpDataType, decode_payload, encode_payload
from dataset_builder.format import Quality
from edge_agent.core.chunk import SampleChunk, chunks_to_batch
from edge_agent.errors import SinkError, SinkUnavailable
from edge_agent.signals import DataType, SignalCatalog, SignalSpec
from edge_agent.sinks.base import SinkContext
from edge_agent.sinks.mqtt_uplink import MqttUplinkConfig, build
from tests._mosquitto import USERS, mosquitto, mosquitto_factory  # noqa: F401


class Subscriber:
    """A plain paho subscriber collecting (topic, payload) in arrival order."""

    def __init__(self, port: int, topics: list[str], client_id: str | None = None, user: str | None = None) -> None:
        self.msgs: list[tuple[str, bytes]] = []
        self.cv = threading.Condition()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=client_id is None)
        if user:
            c.username_pw_set(user, USERS[user])
        c.on_message = self._on
        subscribed = threading.Event()
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_connect = lambda cl, *a: cl.subscribe([(t, 1) for t in topics])
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert subscribed.wait(5)
        self.client = c

    def _on(self, c, u, m) -> None:
        with self.cv:
            self.msgs.append((m.topic, m.payload))
            self.cv.notify_all()

    def wait(self, n: int, timeout: float = 10.0) -> list[tuple[str, bytes]]:
        with self.cv:
            self.cv.wait_for(lambda: len(self.msgs) >= n, timeout)
            return list(self.msgs)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_sink(tmp_path, broker: dict, **extra):
    cat = SignalCatalog()
    t = cat.register(SignalSpec(name="temp", asset="acme/casting/line1/pourer", unit="Cel", connector="c"))
    m = cat.register(SignalSpec(name="mode", asset="acme/casting/line1/pourer", dtype=DataType.string, connector="c"))
    cfg = MqttUplinkConfig.model_validate({"type": "mqtt_uplink", "broker": broker, **extra})
    ctx = SinkContext(sink_id="uplink", catalog=cat, agent_id="gw1", state_dir=tmp_path / "state")
    return build(cfg, ctx), cat, t, m


def batch(rows: list[tuple[int, int, float | None, str | None]]) -> pa.RecordBatch:
    ids = [r[0] for r in rows]
    chunk = SampleChunk.from_values(ids, [r[2] if r[2] is not None else float("nan") for r in rows],
                                    source_time_ns=pa.array([r[1] for r in rows]).to_numpy())
    chunk.text = [r[3] for r in rows]
    import numpy as np

    chunk.valid = np.array([r[2] is not None for r in rows])
    return chunks_to_batch([chunk])


async def test_uns_json_topics_in_order(mosquitto, tmp_path):
    sub = Subscriber(mosquitto.plain_port, ["acme/#"])
    sink, cat, t, m = make_sink(tmp_path, {"port": mosquitto.plain_port, "session": "clean"})
    assert await sink.open() == {}
    t0 = 1_700_000_000_000
    await sink.write("b", 1, batch([(t, t0 * 10**6, 20.5, None), (m, t0 * 10**6, None, "AUTO"), (t, (t0 + 1) * 10**6, None, None)]))
    await sink.commit()
    msgs = sub.wait(3)
    await sink.aclose()
    sub.close()
    assert [tp for tp, _ in msgs] == ["acme/casting/line1/pourer/temp", "acme/casting/line1/pourer/mode", "acme/casting/line1/pourer/temp"]
    docs = [json.loads(p) for _, p in msgs]
    assert docs[0] == {"timestamp": t0, "value": 20.5, "quality": 0, "unit": "Cel"}
    assert docs[1] == {"timestamp": t0, "value": "AUTO", "quality": 0}
    assert docs[2]["value"] is None and docs[2]["timestamp"] == t0 + 1
    assert sink.ctx.metrics.committed_rows == 3


async def test_large_batches_wait_for_acks_within_the_publish_window(mosquitto, tmp_path):
    """Packet ids are 16-bit: write() keeps at most max_outstanding_publishes unacknowledged."""
    n = 2500
    sub = Subscriber(mosquitto.plain_port, ["acme/#"])
    sink, cat, t, m = make_sink(tmp_path, {"port": mosquitto.plain_port, "session": "clean"}, max_outstanding_publishes=50)
    await sink.open()
    await sink.write("b", 1, batch([(t, (10**12 + i) * 10**6, float(i), None) for i in range(n)]))
    assert len(sink._infos) - sink._confirmed <= 50 + 1000  # at most one 1000-row step beyond the window
    await sink.commit()
    msgs = sub.wait(n)
    await sink.aclose()
    sub.close()
    assert [json.loads(p)["value"] for _, p in msgs] == [float(i) for i in range(n)]


async def test_sparkplug_edge_node_birth_data_rebirth_and_death(mosquitto, tmp_path):
    sub = Subscriber(mosquitto.plain_port, [f"spBv1.0/plant/{k}/#" for k in ("NBIRTH", "NDATA", "NDEATH")])
    sink, cat, t, m = make_sink(tmp_path, {"port": mosquitto.plain_port, "session": "clean"},
                                uns=None, sparkplug={"group_id": "plant", "max_metrics_per_message": 2})
    await sink.open()
    t0 = 1_700_000_000_000
    await sink.write("b", 1, batch([(t, t0 * 10**6, 20.5, None), (m, t0 * 10**6, None, "AUTO"), (t, (t0 + 5) * 10**6, 21.0, None)]))
    await sink.commit()
    msgs = sub.wait(3)
    assert [tp for tp, _ in msgs] == ["spBv1.0/plant/NBIRTH/gw1", "spBv1.0/plant/NDATA/gw1", "spBv1.0/plant/NDATA/gw1"]
    birth = decode_payload(msgs[0][1])
    assert birth.seq == 0
    names = {mm.name: mm for mm in birth.metrics}
    assert names["bdSeq"].value == 0 and names["Node Control/Rebirth"].value is False
    assert names["acme/casting/line1/pourer/temp"].alias == t and names["acme/casting/line1/pourer/temp"].datatype == SpDataType.Double
    assert names["acme/casting/line1/pourer/mode"].datatype == SpDataType.String
    d1, d2 = decode_payload(msgs[1][1]), decode_payload(msgs[2][1])
    assert (d1.seq, d2.seq) == (1, 2)
    assert [(x.alias, x.timestamp, x.value) for x in d1.metrics + d2.metrics] == [(t, t0, 20.5), (m, t0, "AUTO"), (t, t0 + 5, 21.0)]
    # a new signal -> a new NBIRTH before the data that uses it
    new = cat.register(SignalSpec(name="pressure", asset="acme/casting/line1/pourer", connector="c"))
    await sink.write("b", 2, batch([(new, t0 * 10**6, 3.0, None)]))
    await sink.commit()
    msgs = sub.wait(5)
    assert [tp.split("/")[2] for tp, _ in msgs[3:5]] == ["NBIRTH", "NDATA"]
    assert decode_payload(msgs[4][1]).seq == 1
    # NCMD rebirth from a host application
    host = paho.Client(CallbackAPIVersion.VERSION2)
    host.connect("127.0.0.1", mosquitto.plain_port)
    host.loop_start()
    rebirth = encode_payload(int(time.time() * 1000), None, [Metric(name="Node Control/Rebirth", datatype=SpDataType.Boolean, value=True)])
    host.publish("spBv1.0/plant/NCMD/gw1", rebirth, qos=1).wait_for_publish(5)
    msgs = sub.wait(6)
    assert msgs[5][0] == "spBv1.0/plant/NBIRTH/gw1" and len(decode_payload(msgs[5][1]).metrics) == 5
    await sink.aclose()
    msgs = sub.wait(7)
    death = decode_payload(msgs[6][1])
    assert msgs[6][0] == "spBv1.0/plant/NDEATH/gw1" and death.metrics[0].name == "bdSeq" and death.metrics[0].value == 0
    # the next session carries the next bdSeq
    sink2, *_ = make_sink(tmp_path, {"port": mosquitto.plain_port, "session": "clean"}, uns=None, sparkplug={"group_id": "plant"})
    await sink2.open()
    await sink2.write("b", 3, batch([(t, t0 * 10**6, 1.0, None)]))
    await sink2.commit()
    msgs = sub.wait(8)
    assert {mm.name: mm.value for mm in decode_payload(msgs[7][1]).metrics}["bdSeq"] == 1
    await sink2.aclose()
    host.loop_stop()
    sub.close()


async def test_acl_refusal_is_a_clear_error_and_data_is_not_committed(mosquitto, tmp_path):
    """MQTT 5 brokers say "Not authorized" in the PUBACK; the commit fails, nothing is counted."""
    broker = {"port": mosquitto.auth_port, "username": "reader", "password": USERS["reader"], "protocol": "5", "session": "clean"}
    sink, cat, t, m = make_sink(tmp_path, broker)
    await sink.open()
    await sink.write("b", 1, batch([(t, 10**18, 1.0, None)]))
    with pytest.raises(SinkError, match="refused publishes .*Not authorized") as ei:
        await sink.commit()
    assert USERS["reader"] not in str(ei.value)
    assert sink.ctx.metrics.committed_rows == 0
    await sink.abort()
    await sink.aclose()


async def test_broker_away_write_raises_unavailable(tmp_path):
    from tests._mosquitto import free_port

    sink, cat, t, m = make_sink(tmp_path, {"port": free_port(), "connect_timeout_secs": 2})
    await sink.open()  # a broker that is away does not stop the agent
    with pytest.raises(SinkUnavailable, match="cannot connect"):
        await sink.write("b", 1, batch([(t, 10**18, 1.0, None)]))
    await sink.abort()


async def test_store_and_forward_through_the_agent(mosquitto_factory, tmp_path):
    """Broker away for a while: the agent keeps data in its durable buffer; once the broker is
    back, every row is delivered, in order, with its original timestamp."""
    from edge_agent.config import load_config_text
    from edge_agent.runtime.agent import Agent

    broker = mosquitto_factory()
    broker.stop()  # away from the start
    n = 300
    cfg = {
        "agent": {"id": "gw1", "data_dir": str(tmp_path / "data"), "state_dir": str(tmp_path / "state"), "http": {"enabled": False}},
        "core": {"batch": {"max_rows": 50, "max_age_secs": 0.1}},
        "sinks": [{"id": "uplink", "type": "mqtt_uplink",
                   "broker": {"port": broker.plain_port, "client_id": "gw1-uplink", "connect_timeout_secs": 1},
                   "uns": {"topic": "uplink/{signal}"}}],
        "connectors": [{"id": "syn", "type": "synthetic", "asset": "acme/line1", "rate_hz": 200, "max_rows": n,
                        "signals": [{"name": "counter", "waveform": "counter"}]}],
    }
    agent = Agent(load_config_text(yaml.safe_dump(cfg)))
    task = asyncio.create_task(agent.run(duration_secs=30))
    await asyncio.sleep(2.5)  # all rows produced while the broker is down
    assert agent.sink_runners[0].buffer.rows > 0
    sub = None
    await asyncio.to_thread(broker.restart_on_same_ports)
    sub = Subscriber(broker.plain_port, ["uplink/#"])
    msgs = await asyncio.to_thread(sub.wait, n, 25)
    agent.request_stop()
    await task
    sub.close()
    docs = [json.loads(p) for _, p in msgs]
    values = [d["value"] for d in docs]
    assert values == [float(i) for i in range(1, n + 1)]  # everything, once, oldest first
    ts = [d["timestamp"] for d in docs]
    assert ts == sorted(ts) and ts[-1] - ts[0] == pytest.approx((n - 1) * 5, abs=2)  # original 200 Hz timestamps
    assert all(d["quality"] == Quality.GOOD for d in docs)
