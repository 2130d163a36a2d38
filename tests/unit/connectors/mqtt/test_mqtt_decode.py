"""JSON / plain decoders, topic templates and config rules (pure logic), plus hypothesis fuzzing:
arbitrary bytes never raise anything but the decoder's own PayloadError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.mqtt.config import JsonOptions, MqttConfig, TimestampFormat, ValueKind
from connectors.mqtt.decode import JsonDecoder, PayloadError, decode_plain, parse_timestamp
from connectors.mqtt.topics import TopicTemplate, clean_metric_name
from dataset_builder.format import Quality


def dec(**kw) -> JsonDecoder:
    return JsonDecoder(JsonOptions(**kw))


def test_json_shapes():
    d = dec()
    assert d(b"21.5") == [(None, None, 21.5, None, Quality.GOOD)]
    assert d(b"true") == [(None, None, 1.0, None, Quality.GOOD)]
    assert d(b'{"value": "3.5", "quality": 2147483648}') == [(None, None, 3.5, None, Quality.BAD)]
    assert d(b'{"a": 1, "b": {"value": 2, "timestamp": 1}, "timestamp": 2}') == [
        ("a", 2_000_000_000, 1.0, None, 0), ("b", 1_000_000_000, 2.0, None, 0)]
    assert d(b'[1, {"value": 2, "timestamp": 1700000000000}]') == [
        (None, None, 1.0, None, 0), (None, 1_700_000_000_000_000_000, 2.0, None, 0)]
    nested = dec(value_path="data.v", timestamp_path="meta.t", samples_path="batch")
    assert nested(b'{"batch": [{"data": {"v": 1}, "meta": {"t": 5}}]}') == [(None, 5_000_000_000, 1.0, None, 0)]
    assert JsonDecoder(JsonOptions(), ValueKind.text)(b'{"value": "RUN"}')[0][3] == "RUN"


@pytest.mark.parametrize(("raw", "fmt", "ns"), [
    (1_700_000_000, TimestampFormat.auto, 1_700_000_000 * 10**9),
    (1_700_000_000_123, TimestampFormat.auto, 1_700_000_000_123 * 10**6),
    (1_700_000_000_123_456, TimestampFormat.auto, 1_700_000_000_123_456 * 10**3),
    (1_700_000_000_123_456_789, TimestampFormat.auto, 1_700_000_000_123_456_789),
    (1.5, TimestampFormat.epoch_s, 1_500_000_000),
    ("1700000000000", TimestampFormat.epoch_ms, 1_700_000_000 * 10**9),
    ("2023-11-14T22:13:20Z", TimestampFormat.auto, 1_700_000_000 * 10**9),
    ("2023-11-14T23:13:20.5+01:00", TimestampFormat.iso8601, 1_700_000_000_500_000_000),
])
def test_timestamps(raw, fmt, ns):
    assert parse_timestamp(raw, fmt) == ns


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{oops", "malformed_json"),
    (b"\xff", "malformed_json"),
    (b'{"value": [1]}', "wrong_type"),
    (b'{"value": null}', "wrong_type"),
    (b'{"value": "abc"}', "wrong_type"),
    (b'{"value": 1, "timestamp": true}', "bad_timestamp"),
    (b'{"value": 1, "timestamp": 1e300}', "bad_timestamp"),
    (b'{"value": 1, "timestamp": 100000000000000000000000000000}', "bad_timestamp"),
    (b'{"value": 1, "quality": "meh"}', "bad_quality"),
    (b'"text"', "wrong_type"),
])
def test_json_errors_have_reasons(payload, reason):
    with pytest.raises(PayloadError) as ei:
        dec()(payload)
    assert ei.value.reason == reason


def test_plain():
    assert decode_plain(b" 3.25\n") == [(None, None, 3.25, None, 0)]
    assert decode_plain(b"FALSE")[0][2] == 0.0
    assert decode_plain(b"AUTO", ValueKind.text)[0][3] == "AUTO"
    with pytest.raises(PayloadError, match="wrong_type"):
        decode_plain(b"AUTO")
    with pytest.raises(PayloadError, match="invalid_utf8"):
        decode_plain(b"\xc3\x28")


def test_topic_templates():
    t = TopicTemplate.parse("plant/{line}/{asset}/{signal}")
    assert t.filter == "plant/+/+/+" and t.variables == ("line", "asset", "signal")
    assert t.match("plant/l1/press/temp") == {"line": "l1", "asset": "press", "signal": "temp"}
    assert t.match("plant/l1/press") is None and t.match("other/l1/press/temp") is None
    m = TopicTemplate.parse("spBv1.0/{group}/#")
    assert m.filter == "spBv1.0/+/#" and m.match("spBv1.0/G/NDATA/n1") == {"group": "G", "_rest": "NDATA/n1"}
    assert TopicTemplate.parse("a/+/b").match("a/x/b") == {}
    for bad in ("a/#/b", "a/{x}/{x}", "a/b{x}/c", ""):
        with pytest.raises(ValueError):
            TopicTemplate.parse(bad)
    assert clean_metric_name("Inputs/Temp 1") == "Inputs.Temp_1"


def test_config_rules():
    base = {"id": "m", "type": "mqtt", "subscriptions": [{"topic": "a/{signal}", "qos": 1}]}
    assert MqttConfig.model_validate(base).broker.effective_port == 1883
    with pytest.raises(ValidationError, match="only allowed when every subscription uses qos 0"):
        MqttConfig.model_validate({**base, "when_full": "drop_oldest"})
    MqttConfig.model_validate({**base, "subscriptions": [{"topic": "a/{signal}", "qos": 0}], "when_full": "drop_oldest"})
    with pytest.raises(ValidationError, match="declare 'subscriptions' or 'signals'"):
        MqttConfig.model_validate({"id": "m", "type": "mqtt"})
    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        MqttConfig.model_validate({**base, "broker": {"tls": {"cert_file": "c.pem"}}})
    with pytest.raises(ValidationError, match=r"asset template uses \{line\}"):
        MqttConfig.model_validate({**base, "subscriptions": [{"topic": "a/{x}/{signal}", "asset": "p/{line}"}]})
    with pytest.raises(ValidationError, match="'#' must be the last level"):
        MqttConfig.model_validate({**base, "subscriptions": [{"topic": "a/#/b"}]})
    MqttConfig.model_validate({**base, "subscriptions": [{"topic": "spBv1.0/{g}/#", "format": "sparkplug_b", "asset": "p/{node}/{device}"}]})
    tls = MqttConfig.model_validate({**base, "broker": {"tls": {}, "password": "s3cret"}})
    assert tls.broker.effective_port == 8883
    assert "s3cret" not in repr(tls) and "s3cret" not in json.dumps(tls.model_dump(mode="json"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_json_and_plain_raise_only_payload_error(data):
    for d in (dec(), dec(shape="object"), dec(shape="samples"), JsonDecoder(JsonOptions(), ValueKind.text)):
        try:
            out = d(data)
        except PayloadError:
            continue
        assert all(isinstance(s[2], float) for s in out)
    for kind in ValueKind:
        try:
            decode_plain(data, kind)
        except PayloadError:
            pass


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["value", "timestamp", "quality", "x"]), c, max_size=4),
                     max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_fuzz_structured_json_raises_only_payload_error(doc):
    try:
        dec()(json.dumps(doc).encode())
    except PayloadError:
        pass
