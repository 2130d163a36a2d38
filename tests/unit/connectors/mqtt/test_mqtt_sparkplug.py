"""Sparkplug B codec and host state machine (pure logic, fake clock), plus fuzzing of the codec,
the host and the connector's message path: arbitrary bytes never raise out of them."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import ConnectorContext
from connectors.mqtt.config import MqttConfig
from connectors.mqtt.connector import MqttConnector
from connectors.mqtt.sparkplug import Rows, SparkplugHost
from connectors.mqtt.sparkplug_codec import Metric, SparkplugError, SpDataType, decode_payload, encode_payload
from dataset_builder.format import Quality
from edge_agent.signals import SignalCatalog


def test_codec_roundtrip_all_scalar_types():
    ms = [Metric(name="i8", alias=1, datatype=SpDataType.Int8, value=-5),
          Metric(name="i16", alias=2, datatype=SpDataType.Int16, value=-300),
          Metric(name="i32", alias=3, datatype=SpDataType.Int32, value=-2**31),
          Metric(name="i64", alias=4, datatype=SpDataType.Int64, value=-2**63),
          Metric(name="u32", alias=5, datatype=SpDataType.UInt32, value=2**32 - 1),
          Metric(name="u64", alias=6, datatype=SpDataType.UInt64, value=2**64 - 1),
          Metric(name="f", timestamp=7, datatype=SpDataType.Float, value=1.5),
          Metric(name="d", datatype=SpDataType.Double, value=-2.25),
          Metric(name="b", datatype=SpDataType.Boolean, value=True),
          Metric(name="s", datatype=SpDataType.String, value="ü"),
          Metric(name="n", datatype=SpDataType.Double, is_null=True)]
    p = decode_payload(encode_payload(1234, 7, ms))
    assert (p.timestamp, p.seq) == (1234, 7)
    assert [(m.name, m.alias, m.datatype, m.value, m.is_null) for m in p.metrics] == [
        (m.name, m.alias, int(m.datatype), m.value, m.is_null) for m in ms]
    # signed small types written in their own width (some encoders do) decode the same
    raw = bytes([0x12, 0x05, 0x20, 0x01, 0x50, 0xFB, 0x01])  # Metric{datatype=Int8, int_value=251}
    assert decode_payload(raw).metrics[0].value == -5


@pytest.mark.parametrize("raw", [b"\x08", b"\x12\x05\x0a", b"\x0b", b"\x12\x02\x0a\x05", b"\x12\x03\x62\x00\x00", b"\x00"])
def test_codec_rejects_malformed(raw):
    with pytest.raises(SparkplugError):
        decode_payload(raw)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def host(min_interval=5.0):
    cat = SignalCatalog()
    clock = Clock()
    h = SparkplugHost("c", cat.register, base_asset="plant", units={"T": "Cel"}, rebirth_min_interval_secs=min_interval, clock=clock)
    return h, cat, clock


def birth(seq=0, bd=1):
    return encode_payload(1000, seq, [Metric(name="bdSeq", datatype=SpDataType.Int64, value=bd),
                                      Metric(name="T", alias=1, datatype=SpDataType.Double, value=1.0)])


def data(seq, alias=1, value=2.0):
    return encode_payload(2000, seq, [Metric(alias=alias, datatype=SpDataType.Double, value=value)])


def test_seq_wraps_without_gap_and_rebirth_is_rate_limited():
    h, cat, clock = host()
    rows = Rows()
    assert h.handle("spBv1.0/G/NBIRTH/N", birth(seq=250), 0, rows).problems == []
    for s in (251, 252, 253, 254, 255, 0, 1):
        r = h.handle("spBv1.0/G/NDATA/N", data(s), 0, rows)
        assert r.gaps == 0 and r.rebirth is None
    r = h.handle("spBv1.0/G/NDATA/N", data(5), 0, rows)
    assert r.gaps == 1 and r.rebirth == ("G", "N")
    r = h.handle("spBv1.0/G/NDATA/N", data(9), 0, rows)
    assert r.gaps == 1 and r.rebirth is None  # within rebirth_min_interval
    clock.t = 6.0
    assert h.handle("spBv1.0/G/NDATA/N", data(11, alias=42), 0, rows).rebirth == ("G", "N")
    assert cat.by_key("plant/G/N/T").spec.unit == "Cel"


def test_death_with_stale_bdseq_is_ignored_and_ddeath_stales_only_the_device():
    h, cat, _ = host()
    rows = Rows()
    h.handle("spBv1.0/G/NBIRTH/N", birth(bd=4), 0, rows)
    h.handle("spBv1.0/G/DBIRTH/N/D", encode_payload(1, 1, [Metric(name="S", alias=9, datatype=SpDataType.Float, value=1.0)]), 0, rows)
    n = len(rows)
    old_death = encode_payload(None, None, [Metric(name="bdSeq", datatype=SpDataType.Int64, value=3)])
    h.handle("spBv1.0/G/NDEATH/N", old_death, 0, rows)  # a will from an older session
    assert len(rows) == n and h.nodes[("G", "N")].born
    h.handle("spBv1.0/G/DDEATH/N/D", encode_payload(None, 2, []), 77, rows)
    assert rows.sid[n:] == [cat.by_key("plant/G/N/D/S").id] and rows.qual[n:] == [Quality.BAD_NOT_CONNECTED]
    r = h.handle("spBv1.0/G/DDATA/N/D", encode_payload(None, 3, [Metric(alias=9, datatype=SpDataType.Float, value=2.0)]), 0, rows)
    assert [p.reason for p in r.problems] == ["no_birth"]
    h.handle("spBv1.0/G/NDEATH/N", encode_payload(None, None, [Metric(name="bdSeq", datatype=SpDataType.Int64, value=4)]), 88, rows)
    assert rows.qual[-1] == Quality.BAD_NOT_CONNECTED and math.isnan(rows.val[-1])
    assert not h.nodes[("G", "N")].born


class _FakeClient:
    def publish(self, *a, **k):
        return None


class _FakeSession:
    client = _FakeClient()
    connected = True


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["NBIRTH", "NDATA", "DBIRTH/N/D", "DDATA/N/D", "NDEATH", "DDEATH/N/D", "STATE", "XX"]),
                          st.binary(max_size=120) | st.builds(lambda s, a, v: data(s, a, v), st.integers(0, 255),
                                                              st.integers(0, 3), st.floats(allow_nan=False))),
                min_size=1, max_size=8))
def test_fuzz_host_never_raises(msgs):
    h, cat, _ = host(0)
    rows = Rows()
    h.handle("spBv1.0/G/NBIRTH/N", birth(), 0, rows)
    for kind, payload in msgs:
        topic = f"spBv1.0/G/{kind}" if "/" in kind else f"spBv1.0/G/{kind}/N"
        h.handle(topic, payload, 0, rows)
    assert len(rows.sid) == len(rows.val) == len(rows.qual) == len(rows.recv)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["plant/a/x", "raw/b/y", "spBv1.0/G/NDATA/N", "spBv1.0/G/NBIRTH/N", "other/t"]),
                          st.binary(max_size=200)), min_size=1, max_size=10))
def test_fuzz_connector_message_path_never_raises(msgs):
    """The connector's decode path (routing, decoders, Sparkplug, quarantine, chunk building)."""
    cfg = MqttConfig.model_validate({"id": "fz", "type": "mqtt", "max_payload_bytes": 150, "subscriptions": [
        {"topic": "plant/{asset}/{signal}"}, {"topic": "raw/{asset}/{signal}", "format": "plain"},
        {"topic": "spBv1.0/{group}/#", "format": "sparkplug_b"}]})
    chunks = []

    async def send(chunk):
        chunks.append(chunk)
        return True

    quarantined = []
    ctx = ConnectorContext("fz", SignalCatalog(), send, quarantine_sink=lambda *a: quarantined.append(a))
    unit = MqttConnector(cfg, ctx)
    items = [(t, p, i + 1, 1, 10**18, False) for i, (t, p) in enumerate(msgs)]
    asyncio.run(unit._process(items, _FakeSession(), 0))
    assert len(chunks) == 1 and chunks[0].on_durable is not None  # every QoS 1 message is acked, even bad ones
    c = chunks[0]
    assert c.signal_id.shape == c.value.shape == c.quality.shape == c.source_time_ns.shape
