"""Pure logic of the OPC UA connectors: config validation, node id / browse path parsing,
value conversion, timestamps, units, trust decisions. No sockets."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from asyncua import ua
from pydantic import ValidationError

from connectors.opcua.config import OpcUaPollingConfig, OpcUaSubscriptionConfig
from connectors.opcua.connector import decode_values
from connectors.opcua.nodes import convert, format_node_id, parse_browse_path, parse_node_id, to_ns, unece_code
from connectors.opcua.security import _first_cert, fingerprint, trusted

EP = "opc.tcp://127.0.0.1:4840"


def sub(**kw):
    d = dict(id="m", type="opcua_subscription", asset="a/b", endpoint=EP, nodes=[{"name": "x", "node_id": "i=2258"}])
    d.update(kw)
    return OpcUaSubscriptionConfig(**d)


def test_secure_mode_needs_trust_never_silently():
    with pytest.raises(ValidationError, match="never trusted silently"):
        sub(security={"mode": "SignAndEncrypt"})
    cfg = sub(security={"mode": "Sign", "server_fingerprint_sha256": "AB:" * 31 + "CD"})
    assert cfg.security.server_fingerprint_sha256 == "ab" * 31 + "cd"
    with pytest.raises(ValidationError, match="64 hex"):
        sub(security={"mode": "Sign", "server_fingerprint_sha256": "abc"})


def test_node_needs_exactly_one_address_and_unique_names():
    with pytest.raises(ValidationError, match="exactly one"):
        sub(nodes=[{"name": "x"}])
    with pytest.raises(ValidationError, match="exactly one"):
        sub(nodes=[{"name": "x", "node_id": "i=1", "browse_path": "Objects/A"}])
    with pytest.raises(ValidationError, match="declared twice"):
        sub(nodes=[{"name": "x", "node_id": "i=1"}, {"name": "x", "node_id": "i=2"}])
    with pytest.raises(ValidationError, match="at least one"):
        sub(nodes=[])


def test_identity_and_password_is_secret():
    cfg = sub(identity={"kind": "username", "username": "u", "password": "hunter2"})
    assert "hunter2" not in repr(cfg) and "hunter2" not in json.dumps(cfg.model_dump(mode="json"))
    assert cfg.identity.password.get_secret_value() == "hunter2"
    with pytest.raises(ValidationError, match="needs 'username'"):
        sub(identity={"kind": "username"})
    with pytest.raises(ValidationError, match="certificate"):
        sub(identity={"kind": "certificate", "certificate": "/x.der"})


def test_polling_and_subscription_defaults():
    p = OpcUaPollingConfig(id="m", type="opcua_polling", asset="a", endpoint=EP, nodes=[{"name": "x", "node_id": "i=1"}])
    assert p.max_nodes_per_read == 0 and p.poll_interval_secs == 1.0
    with pytest.raises(ValidationError):
        sub(endpoint="http://x")


@pytest.mark.parametrize(
    ("text", "ns_index", "expected"),
    [
        ("nsu=urn:x;s=Spindle.Speed", {"urn:x": 3}, ua.NodeId("Spindle.Speed", 3)),
        ("nsu=http://a/b/;i=1001", {"http://a/b/": 7}, ua.NodeId(1001, 7)),
        ("i=2258", {}, ua.NodeId(2258, 0)),
        ("ns=0;i=85", {}, ua.NodeId(85, 0)),
        ("nsu=urn:x;s=a;b=c", {"urn:x": 2}, ua.NodeId("a;b=c", 2)),
    ],
)
def test_parse_node_id_by_namespace_uri(text, ns_index, expected):
    assert parse_node_id(text, allow_index=False).to_node_id(ns_index) == expected


def test_numeric_namespace_index_only_when_allowed_and_unknown_uri():
    with pytest.raises(ValueError, match="namespace index"):
        parse_node_id("ns=2;s=X", allow_index=False)
    assert parse_node_id("ns=2;s=X", allow_index=True).to_node_id({}) == ua.NodeId("X", 2)
    with pytest.raises(KeyError):
        parse_node_id("nsu=urn:missing;i=1", allow_index=False).to_node_id({"urn:x": 2})
    for bad in ("Speed", "i=abc", "x=1"):
        with pytest.raises(ValueError):
            parse_node_id(bad, allow_index=True)


def test_format_node_id_roundtrip_uses_uri():
    ns = ["http://opcfoundation.org/UA/", "urn:srv", "urn:x"]
    assert format_node_id(ua.NodeId("Spindle", 2), ns) == "nsu=urn:x;s=Spindle"
    assert format_node_id(ua.NodeId(2258, 0), ns) == "i=2258"
    ref = parse_node_id(format_node_id(ua.NodeId(42, 1), ns), allow_index=False)
    assert ref.to_node_id({"urn:srv": 5}) == ua.NodeId(42, 5)


def test_parse_browse_path():
    aliases = {"mt": "http://opcfoundation.org/UA/MachineTool/"}
    p = parse_browse_path("Objects/Machines/mt:Monitoring/Spindle", aliases, allow_index=False)
    assert p.start == ua.ObjectIds.ObjectsFolder
    assert [s.name for s in p.segments] == ["Machines", "Monitoring", "Spindle"]
    assert p.segments[1].namespace_uri == aliases["mt"] and p.segments[0].namespace_uri is None
    assert parse_browse_path("/Root/Objects/X", {}, allow_index=False).start == ua.ObjectIds.RootFolder
    assert parse_browse_path("X/Y", {}, allow_index=False).segments[0].name == "X"  # relative to Objects
    assert parse_browse_path("X/urn:weird:Name", {}, allow_index=False).segments[1].name == "urn:weird:Name"
    with pytest.raises(ValueError, match="namespace index"):
        parse_browse_path("Objects/2:Machines", {}, allow_index=False)
    assert parse_browse_path("Objects/2:Machines", {}, allow_index=True).segments[0].namespace_index == 2
    with pytest.raises(ValueError):
        parse_browse_path("Objects", {}, allow_index=False)


def test_unece_codes():
    assert unece_code(4408652) == "CEL"
    assert unece_code((ord("P") << 8) | ord("1")) == "P1"
    assert unece_code((ord("C") << 16) | (ord("1") << 8) | ord("6")) == "C16"


def test_to_ns_and_unknown_datetimes():
    t = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    assert to_ns(t) == int(t.timestamp()) * 10**9 + 123456000
    assert to_ns(None) == 0
    assert to_ns(dt.datetime(1601, 1, 1, tzinfo=dt.timezone.utc)) == 0  # DateTime MinValue
    assert to_ns(dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc)) == 0  # DateTime MaxValue


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, (1.5, None, True)),
        (7, (7.0, None, True)),
        (True, (1.0, None, True)),
        ("O1001", (None, "O1001", True)),
        (ua.LocalizedText("Running"), (None, "Running", True)),
        ([1, 2, 3], (None, "[1, 2, 3]", True)),
        (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), (None, "2024-01-01T00:00:00+00:00", True)),
        (b"\x01\x02", (None, "AQI=", True)),
        (None, (None, None, False)),
    ],
)
def test_convert(value, expected):
    f, text, ok = convert(value)
    assert (None if np.isnan(f) else f, text, ok) == expected


def test_convert_structure_to_json():
    _, text, ok = convert(ua.Range(Low=0.0, High=5.0))
    assert ok and json.loads(text) == {"Low": 0.0, "High": 5.0}


def test_decode_values_keeps_status_and_timestamps_per_value():
    t = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    dvs = [
        ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), SourceTimestamp=t, ServerTimestamp=t + dt.timedelta(seconds=1)),
        ua.DataValue(ua.Variant(None), StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure)),
        ua.DataValue(ua.Variant("txt", ua.VariantType.String), StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),
                     ServerTimestamp=t),
    ]
    vals, valid, qual, src, srv, text = decode_values(dvs, receive_ns=123)
    assert vals[0] == 1.0 and valid.tolist() == [True, False, False]
    assert qual.tolist() == [0, ua.StatusCodes.BadSensorFailure, ua.StatusCodes.UncertainLastUsableValue]
    assert src.tolist() == [to_ns(t), 123, to_ns(t)]  # no source time: server time, else receive time
    assert srv.tolist() == [to_ns(t) + 10**9, 0, to_ns(t)]
    assert text == [None, None, "txt"]


def test_trust_by_fingerprint_or_trust_dir(tmp_path):
    from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
    from cryptography.hazmat.primitives import serialization

    key = generate_private_key()
    cert = generate_self_signed_app_certificate(key, "urn:test", {}, [], [], days=1)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert trusted(der, None, fingerprint(der))
    assert not trusted(der, None, "00" * 32)
    assert not trusted(der, tmp_path, None)
    (tmp_path / "other.txt").write_bytes(der)  # wrong extension: ignored
    assert not trusted(der, tmp_path, None)
    (tmp_path / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert trusted(der, tmp_path, None)
    assert _first_cert(der + der) == der and _first_cert(der) == der


def test_simulator_fault_schedule(tmp_path):
    from hardware.machine_tool import load_faults

    f = tmp_path / "faults.json"
    f.write_text('[{"kind": "tool_wear", "at_secs": 5, "duration_secs": 60, "severity": 0.5}, {"kind": "server_restart"}]')
    faults = load_faults(f)
    assert [(x.kind, x.at_secs, x.duration_secs, x.severity) for x in faults] == [("tool_wear", 5.0, 60.0, 0.5), ("server_restart", 0.0, 30.0, 1.0)]
    f.write_text('{"kind": "coolant_failure", "at_secs": 1}\n{"kind": "melting"}\n')
    with pytest.raises(ValueError, match="unknown fault kind 'melting'"):
        load_faults(f)
