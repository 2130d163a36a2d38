"""The MQTT connector against a real Mosquitto: every payload kind, quarantine, TLS and auth,
ACL denial, broker restart, acks only after durability."""

from __future__ import annotations

import asyncio
import json
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.base import ConnectorContext
from connectors.mqtt.config import MqttConfig
from connectors.mqtt.connector import build
from connectors.mqtt.sparkplug_codec import Metric, SpDataType, encode_payload
from dataset_builder.format import Quality
from edge_agent.core.channel import BoundedChannel
from edge_agent.errors import NotConnected, SecurityError
from edge_agent.signals import SignalCatalog
from tests._mosquitto import USERS, mosquitto, mosquitto_factory  # noqa: F401


class Harness:
    """A connector wired to a real BoundedChannel; quarantined payloads kept in a list."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = MqttConfig.model_validate(cfg)
        self.catalog = SignalCatalog()
        self.channel = BoundedChannel(10_000, 10_000_000)
        self.quarantined: list[tuple[bytes, str, dict]] = []
        self.ctx = ConnectorContext(
            connector_id=self.cfg.id, catalog=self.catalog, send=self.channel.send,
            quarantine_sink=lambda cid, raw, reason, meta: self.quarantined.append((raw, reason, meta)),
        )
        self.unit = build(self.cfg, self.ctx)[0]
        self.task: asyncio.Task | None = None
        self.rows: list[tuple[str, int, float, str | None, int]] = []
        self.not_durable: list = []  # on_durable callbacks held back by collect(durable=False)

    async def __aenter__(self) -> Harness:
        await self.unit.connect()
        self.task = asyncio.create_task(self.unit.run())
        return self

    async def __aexit__(self, *exc) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.unit.aclose()

    async def collect(self, n: int, timeout: float = 10.0, durable: bool = True) -> list:
        """Read chunks until ``n`` rows arrived; call on_durable like the runtime does."""
        t_end = time.monotonic() + timeout
        while len(self.rows) < n and time.monotonic() < t_end:
            chunk = await self.channel.recv(timeout=0.2)
            if chunk is None:
                if self.task is not None and self.task.done():
                    self.task.result()
                continue
            for i in range(len(chunk)):
                key = self.catalog.get(int(chunk.signal_id[i])).key
                valid = chunk.valid is None or bool(chunk.valid[i])
                text = chunk.text[i] if chunk.text is not None else None
                self.rows.append((key, int(chunk.source_time_ns[i]), float(chunk.value[i]) if valid else None, text, int(chunk.quality[i])))
            if chunk.on_durable is not None:
                if durable:
                    chunk.on_durable()
                else:
                    self.not_durable.append(chunk.on_durable)
        return self.rows


def publisher(port: int, user: str | None = None, protocol=paho.MQTTv311) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    if user:
        c.username_pw_set(user, USERS[user])
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def pub(c: paho.Client, topic: str, payload, qos: int = 1) -> None:
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload)
    c.publish(topic, payload, qos=qos).wait_for_publish(5)


async def test_json_and_plain_payload_kinds(mosquitto):
    cfg = {
        "id": "m1", "type": "mqtt", "asset": "acme",
        "broker": {"host": "127.0.0.1", "port": mosquitto.plain_port, "client_id": "t-kinds", "session": "clean"},
        "subscriptions": [
            {"topic": "plant/{line}/{asset}/{signal}", "units": {"temp": "Cel"}},
            {"topic": "raw/{asset}/{signal}", "format": "plain"},
            {"topic": "text/{signal}", "format": "plain", "value": "text"},
            {"topic": "iso/{signal}", "json_options": {"timestamp_path": "t", "value_path": "v", "timestamp_format": "iso8601"}},
        ],
    }
    p = publisher(mosquitto.plain_port)
    async with Harness(cfg) as h:
        pub(p, "plant/l1/press/temp", 21.5)  # bare number
        pub(p, "plant/l1/press/temp", {"value": 22.0, "timestamp": 1_700_000_000_123, "quality": "bad"})  # ms epoch
        pub(p, "plant/l1/press/state", {"rpm": 1200, "load": 0.5, "timestamp": 1_700_000_000})  # object of values
        pub(p, "plant/l1/press/vib", [{"value": 1.0, "timestamp": 1_700_000_001.5}, 2.0])  # array of samples
        pub(p, "raw/pump/flow", b"3.25")
        pub(p, "raw/pump/on", b"true")
        pub(p, "text/mode", b"AUTO")
        pub(p, "iso/v", {"v": 7, "t": "2024-01-02T03:04:05.5+00:00"})
        rows = await h.collect(10)
    by = {}
    for key, ts, val, text, q in rows:
        by.setdefault(key, []).append((ts, val, text, q))
    assert by["acme/l1/press/temp"][0][1:] == (21.5, None, Quality.GOOD)
    assert by["acme/l1/press/temp"][1] == (1_700_000_000_123_000_000, 22.0, None, Quality.BAD)
    assert by["acme/l1/press/rpm"] == [(1_700_000_000 * 10**9, 1200.0, None, 0)]
    assert by["acme/l1/press/load"] == [(1_700_000_000 * 10**9, 0.5, None, 0)]
    assert [r[:2] for r in by["acme/l1/press/vib"]][0] == (1_700_000_001_500_000_000, 1.0)
    assert by["acme/l1/press/vib"][1][1] == 2.0
    assert by["acme/pump/flow"][0][1] == 3.25 and by["acme/pump/on"][0][1] == 1.0
    assert by["acme/mode"][0][1:3] == (None, "AUTO")
    assert by["acme/v"][0][:2] == (1704164645_500_000_000, 7.0)
    temp = h.catalog.by_key("acme/l1/press/temp").spec
    assert temp.unit == "Cel" and temp.connector == "m1" and temp.address == "mqtt:plant/l1/press/temp"
    assert h.quarantined == []
    p.loop_stop()


async def test_explicit_topic_list(mosquitto):
    cfg = {"id": "m8", "type": "mqtt", "asset": "acme/hall", "signals_format": "plain",
           "broker": {"port": mosquitto.plain_port, "client_id": "t-list", "session": "clean"},
           "signals": [{"topic": "legacy/AI_17", "name": "oil_temp", "unit": "Cel"},
                       {"topic": "legacy/AI_18", "name": "oil_level", "unit": "%", "asset": "acme/hall/tank"}]}
    p = publisher(mosquitto.plain_port)
    async with Harness(cfg) as h:
        pub(p, "legacy/AI_17", b"61.5")
        pub(p, "legacy/AI_18", b"80")
        pub(p, "legacy/AI_19", b"1")  # not listed: not subscribed
        rows = await h.collect(2)
        await asyncio.sleep(0.2)
    p.loop_stop()
    assert [(r[0], r[2]) for r in rows] == [("acme/hall/oil_temp", 61.5), ("acme/hall/tank/oil_level", 80.0)]
    assert h.catalog.by_key("acme/hall/oil_temp").spec.unit == "Cel" and len(h.catalog) == 2


async def test_bad_payloads_are_quarantined_and_other_topics_keep_flowing(mosquitto):
    cfg = {
        "id": "m2", "type": "mqtt", "asset": "acme", "max_payload_bytes": 1000,
        "broker": {"port": mosquitto.plain_port, "client_id": "t-bad", "session": "clean"},
        "subscriptions": [{"topic": "plant/{asset}/{signal}"}, {"topic": "spBv1.0/#", "format": "sparkplug_b"}],
    }
    p = publisher(mosquitto.plain_port)
    async with Harness(cfg) as h:
        pub(p, "plant/a/x", b"{not json")
        pub(p, "plant/a/x", {"value": "abc"})
        pub(p, "plant/a/x", {"value": 1, "timestamp": "yesterday"})
        pub(p, "plant/a/x", b"\xff\xfe")
        pub(p, "plant/a/x", json.dumps({"value": "x" * 2000}))
        pub(p, "spBv1.0/g/NDATA/n1", b"\x0a\xff\xff")  # truncated protobuf
        pub(p, "plant/a/ok", 5)
        rows = await h.collect(1)
        await asyncio.sleep(0.2)
    assert [r[0] for r in rows] == ["acme/a/ok"]
    reasons = [r for _, r, _ in h.quarantined]
    assert reasons == ["malformed_json", "wrong_type", "bad_timestamp", "malformed_json", "oversize", "invalid_protobuf"]
    assert h.quarantined[0][0] == b"{not json" and h.quarantined[0][2]["topic"] == "plant/a/x"
    assert h.ctx.metrics.quarantined["malformed_json"] == 2


async def test_sparkplug_births_aliases_seq_gap_rebirth_and_death(mosquitto):
    cfg = {
        "id": "m3", "type": "mqtt", "asset": "acme",
        "broker": {"port": mosquitto.plain_port, "client_id": "t-sp", "session": "clean"},
        "subscriptions": [{"topic": "spBv1.0/{group}/#", "format": "sparkplug_b", "units": {"Temp": "Cel"}}],
        "sparkplug": {"rebirth_min_interval_secs": 0},
    }
    p = publisher(mosquitto.plain_port)
    ncmd: list[bytes] = []
    p.on_message = lambda c, u, m: ncmd.append(m.payload)
    p.subscribe("spBv1.0/G1/NCMD/#", qos=1)
    async with Harness(cfg) as h:
        now = int(time.time() * 1000)
        pub(p, "spBv1.0/G1/NDATA/N1", encode_payload(now, 0, [Metric(alias=1, datatype=SpDataType.Double, value=1.0)]))
        for _ in range(50):
            if ncmd:
                break
            await asyncio.sleep(0.05)
        assert ncmd, "no rebirth request for data before birth"
        birth = [Metric(name="bdSeq", datatype=SpDataType.Int64, value=3),
                 Metric(name="Temp", alias=1, datatype=SpDataType.Double, value=20.0),
                 Metric(name="Count", alias=2, datatype=SpDataType.Int32, value=-5),
                 Metric(name="Node Control/Rebirth", alias=3, datatype=SpDataType.Boolean, value=False)]
        pub(p, "spBv1.0/G1/NBIRTH/N1", encode_payload(now, 0, birth))
        pub(p, "spBv1.0/G1/DBIRTH/N1/D1", encode_payload(now, 1, [Metric(name="Inputs/Speed", alias=10, datatype=SpDataType.Float, value=1.5)]))
        pub(p, "spBv1.0/G1/NDATA/N1", encode_payload(now + 1, 2, [Metric(alias=1, datatype=SpDataType.Double, value=21.0),
                                                                   Metric(alias=2, datatype=SpDataType.Int32, value=7)]))
        pub(p, "spBv1.0/G1/DDATA/N1/D1", encode_payload(now + 2, 3, [Metric(alias=10, datatype=SpDataType.Float, value=2.5)]))
        rows = await h.collect(6)
        n_before = len(ncmd)
        pub(p, "spBv1.0/G1/NDATA/N1", encode_payload(now + 3, 9, [Metric(alias=1, datatype=SpDataType.Double, value=22.0)]))  # gap
        pub(p, "spBv1.0/G1/NDATA/N1", encode_payload(now + 4, 10, [Metric(alias=99, datatype=SpDataType.Double, value=0.0)]))  # unknown
        pub(p, "spBv1.0/G1/NDEATH/N1", encode_payload(None, None, [Metric(name="bdSeq", datatype=SpDataType.Int64, value=3)]))
        rows = await h.collect(10)
        for _ in range(50):
            if len(ncmd) >= n_before + 2:
                break
            await asyncio.sleep(0.05)
    keys = [r[0] for r in rows]
    assert keys[:2] == ["acme/G1/N1/Temp", "acme/G1/N1/Count"]
    assert rows[1][2] == -5.0 and rows[0][1] == now * 1_000_000
    assert ("acme/G1/N1/D1/Inputs.Speed", now * 1_000_000, 1.5, None, 0) in rows
    assert [r[2] for r in rows if r[0] == "acme/G1/N1/Temp"][:3] == [20.0, 21.0, 22.0]
    assert ("acme/G1/N1/D1/Inputs.Speed", (now + 2) * 1_000_000, 2.5, None, 0) in rows
    stale = [r for r in rows if r[4] == Quality.BAD_NOT_CONNECTED]
    assert {r[0] for r in stale} == {"acme/G1/N1/Temp", "acme/G1/N1/Count", "acme/G1/N1/D1/Inputs.Speed"}
    assert all(r[2] is None for r in stale)
    assert h.catalog.by_key("acme/G1/N1/Temp").spec.unit == "Cel"
    assert h.catalog.by_key("acme/G1/N1/Count").spec.dtype.value == "int32"
    assert [r for _, r, _ in h.quarantined] == ["no_birth", "unknown_alias"]
    assert h.ctx.metrics.errors.get("seq_gap") == 1
    assert len(ncmd) >= n_before + 2  # rebirth for the seq gap and for the unknown alias
    from connectors.mqtt.sparkplug_codec import decode_payload

    m = decode_payload(ncmd[-1]).metrics[0]
    assert (m.name, m.datatype, m.value) == ("Node Control/Rebirth", SpDataType.Boolean, True)


async def test_sparkplug_host_state(mosquitto):
    cfg = {"id": "m9", "type": "mqtt", "broker": {"port": mosquitto.plain_port, "client_id": "t-state", "session": "clean"},
           "subscriptions": [{"topic": "spBv1.0/{group}/#", "format": "sparkplug_b"}], "sparkplug": {"host_id": "axedge1"}}
    states: list[dict] = []
    watcher = paho.Client(CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda c, u, m: states.append(json.loads(m.payload))
    watcher.connect("127.0.0.1", mosquitto.plain_port)
    watcher.loop_start()
    watcher.subscribe("spBv1.0/STATE/axedge1", qos=1)
    async with Harness(cfg):
        for _ in range(50):
            if states:
                break
            await asyncio.sleep(0.05)
    for _ in range(50):
        if len(states) >= 2:
            break
        await asyncio.sleep(0.05)
    watcher.loop_stop()
    assert [st["online"] for st in states[:2]] == [True, False]


async def test_qos1_messages_acked_only_after_durable(mosquitto):
    """Without on_durable the broker redelivers everything to the persistent session."""
    cfg = {"id": "m4", "type": "mqtt", "asset": "acme",
           "broker": {"port": mosquitto.plain_port, "client_id": "t-ack", "session": "persistent"},
           "subscriptions": [{"topic": "plant/ack/{signal}", "qos": 1}]}
    p = publisher(mosquitto.plain_port)
    async with Harness(cfg) as h:  # create the persistent session
        pass
    for i in range(20):
        pub(p, "plant/ack/x", i)
    async with Harness(cfg) as h:
        rows = await h.collect(20, durable=False)
    assert sorted(r[2] for r in rows) == list(map(float, range(20)))
    async with Harness(cfg) as h:  # not acked -> redelivered; now ack them
        rows = await h.collect(20, durable=True)
        await asyncio.sleep(0.3)
    assert sorted(r[2] for r in rows) == list(map(float, range(20)))
    async with Harness(cfg) as h:
        rows = await h.collect(1, timeout=1.0)
    assert rows == []


async def test_tls_with_password_and_hostname_verification(mosquitto):
    base = {"id": "m5", "type": "mqtt", "asset": "acme", "subscriptions": [{"topic": "plant/{signal}"}]}
    tls = {"host": "localhost", "port": mosquitto.tls_port, "username": "axedge", "password": USERS["axedge"],
           "tls": {"ca_file": str(mosquitto.certs["ca"])}, "client_id": "t-tls", "session": "clean", "protocol": "5"}
    async with Harness({**base, "broker": tls}) as h:
        s = publisher(mosquitto.auth_port, "sensor")
        pub(s, "plant/secure", 2.5)
        rows = await h.collect(1)
    assert rows[0][2] == 2.5
    # wrong password: a clear SecurityError naming the broker, without the password
    bad = Harness({**base, "broker": {**tls, "password": "wrong-password"}})
    with pytest.raises(SecurityError, match="refused the login") as ei:
        await bad.unit.connect()
    assert "wrong-password" not in str(ei.value)
    await bad.unit.aclose()
    # another CA: certificate rejected
    other = Harness({**base, "broker": {**tls, "tls": {"ca_file": str(mosquitto.certs["client"])}}})
    with pytest.raises(SecurityError, match="TLS"):
        await other.unit.connect()
    await other.unit.aclose()
    # the certificate names "localhost" only: 127.0.0.1 fails with verify=full, passes with ca_only
    by_ip = {**tls, "host": "127.0.0.1"}
    strict = Harness({**base, "broker": by_ip})
    with pytest.raises(SecurityError, match="TLS certificate rejected"):
        await strict.unit.connect()
    await strict.unit.aclose()
    relaxed = Harness({**base, "broker": {**by_ip, "tls": {"ca_file": str(mosquitto.certs["ca"]), "verify": "ca_only"}}})
    await relaxed.unit.connect()
    await relaxed.unit.aclose()


async def test_mutual_tls_client_certificate(mosquitto):
    base = {"id": "m6", "type": "mqtt", "asset": "acme", "subscriptions": [{"topic": "plant/{signal}"}]}
    broker = {"host": "localhost", "port": mosquitto.mtls_port, "client_id": "t-mtls", "session": "clean",
              "tls": {"ca_file": str(mosquitto.certs["ca"]), "cert_file": str(mosquitto.certs["client"]),
                      "key_file": str(mosquitto.certs["client_key"])}}
    async with Harness({**base, "broker": broker}) as h:
        s = publisher(mosquitto.auth_port, "sensor")
        pub(s, "plant/mtls", 4.5)
        rows = await h.collect(1)
        s.loop_stop()
    assert rows[0][2] == 4.5  # the certificate's CN "axedge" is the ACL user: reading plant/# is allowed
    no_cert = Harness({**base, "broker": {**broker, "tls": {"ca_file": str(mosquitto.certs["ca"])}}})
    with pytest.raises(NotConnected, match="closed before CONNACK.*may require a client certificate"):
        await no_cert.unit.connect()
    await no_cert.unit.aclose()


async def test_broker_restart_reconnect_and_resubscribe(mosquitto_factory):
    """Messages in the pipeline when the broker restarts are redelivered on the new connection;
    they are recognised (not written twice) and acked once the first copy is durable."""
    broker = mosquitto_factory()
    cfg = {"id": "m7", "type": "mqtt", "asset": "acme",
           "broker": {"port": broker.plain_port, "client_id": "t-restart", "session": "persistent", "keepalive_secs": 5},
           "subscriptions": [{"topic": "plant/r/{signal}", "qos": 1}]}
    h = Harness(cfg)
    await h.unit.connect()
    h.task = asyncio.create_task(h.unit.run())
    p = publisher(broker.plain_port)
    for i in range(5):
        pub(p, "plant/r/x", i)
    await h.collect(5, durable=False)  # decoded, not yet durable: not acked
    p.loop_stop()
    await asyncio.to_thread(broker.restart_on_same_ports)
    with pytest.raises(NotConnected, match="connection lost"):
        await asyncio.wait_for(h.task, 10)
    await h.unit.aclose()
    # the runtime reconnects: same unit, connect() again; the broker redelivers the 5 messages
    async with h:
        for _ in range(100):
            if h.ctx.metrics.dropped.get("redelivered_duplicate", 0) >= 5:
                break
            await asyncio.sleep(0.05)
        assert h.ctx.metrics.dropped.get("redelivered_duplicate") == 5
        for cb in h.not_durable:  # the first copies become durable -> the redelivered copies are acked
            cb()
        p = publisher(broker.plain_port)
        pub(p, "plant/r/x", 5)
        rows = await h.collect(6)
        await asyncio.sleep(0.3)
    assert [r[2] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    h.rows.clear()
    async with h:  # everything was acked: nothing comes again
        rows = await h.collect(1, timeout=1.0)
    assert rows == []
    p.loop_stop()
