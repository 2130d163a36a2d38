"""OPC UA connectors against the simulated machine tool over real sockets: values, timestamps,
units, data types, status codes, every security mode and policy, trust and identities."""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np
import pytest

from connectors.base import ConnectorContext
from connectors.opcua.config import OpcUaPollingConfig, OpcUaSubscriptionConfig
from connectors.opcua.connector import build_polling, build_subscription
from edge_agent.core.channel import BoundedChannel
from edge_agent.errors import ConfigError, SecurityError
from edge_agent.signals import DataType, SignalCatalog
from hardware.machine_tool import NS_SIM, MachineToolProcess

pytestmark = pytest.mark.timeout(120)

BAD_NODE_ID_UNKNOWN = 0x80340000
SIM = f"nsu={NS_SIM};s=MachineTool1."
NODES = [
    {"name": "spindle_speed", "node_id": SIM + "Monitoring/Spindle/ActualSpeed"},
    {"name": "spindle_override", "browse_path": "Objects/Machines/MachineTool1/mt:Monitoring/Spindle/Override"},
    {"name": "is_rotating", "browse_path": "Machines/MachineTool1/Monitoring/Spindle/IsRotating"},
    {"name": "program", "browse_path": "Machines/MachineTool1/mt:Production/ActiveProgram/mt:Name"},
    {"name": "program_state", "node_id": SIM + "Production/ActiveProgram/State"},
    {"name": "channel_state", "node_id": SIM + "Monitoring/Channel1/ChannelState"},
    {"name": "coolant_temp", "node_id": SIM + "Monitoring/Coolant/Temperature", "unit": "Cel"},
    {"name": "parts", "node_id": SIM + "Production/PartCounter"},
    {"name": "ghost", "node_id": SIM + "Monitoring/DoesNotExist"},
]
ALIASES = {"mt": "http://opcfoundation.org/UA/MachineTool/"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("mtsim")
    p = MachineToolProcess("--security", "none,sign,encrypt", "--cert-dir", str(d / "pki"), "--user", "operator:s3cret-pw",
                           "--update-hz", "10", "--cycle-secs", "4", log_path=d / "sim.log")
    p.start()
    yield p
    p.stop()


def make_ctx(tmp_path, cid="mill"):
    ch = BoundedChannel(100_000, 10_000_000)
    return ConnectorContext(cid, SignalCatalog(), ch.send, state_dir=tmp_path / "state"), ch


def drain(ch):
    out = []
    while (c := ch.recv_nowait()) is not None:
        out.append(c)
    return out


def sub_cfg(endpoint, **kw):
    base = dict(id="mill", type="opcua_subscription", asset="plant1/machining/line1/mill01", endpoint=endpoint,
                nodes=NODES, namespaces=ALIASES, publishing_interval_ms=100, sampling_interval_ms=100)
    base.update(kw)
    return OpcUaSubscriptionConfig(**base)


def poll_cfg(endpoint, **kw):
    base = dict(id="mill", type="opcua_polling", asset="plant1/machining/line1/mill01", endpoint=endpoint,
                nodes=NODES, namespaces=ALIASES)
    base.update(kw)
    return OpcUaPollingConfig(**base)


async def collect_subscription(unit, ch, secs):
    import asyncio

    await unit.connect()
    task = asyncio.create_task(unit.run())
    try:
        await asyncio.sleep(secs)
        assert not task.done(), task.exception()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await unit.aclose()
    return drain(ch)


def by_name(ctx, chunks):
    rows: dict[str, list[tuple[float, str | None, int, int, int]]] = {}
    for c in chunks:
        for k in range(len(c)):
            name = ctx.catalog.get(int(c.signal_id[k])).spec.name
            valid = True if c.valid is None else bool(c.valid[k])
            text = c.text[k] if c.text is not None else None
            srv = int(c.server_time_ns[k]) if c.server_time_ns is not None else 0
            rows.setdefault(name, []).append((c.value[k] if valid else None, text, int(c.quality[k]), int(c.source_time_ns[k]), srv))
    return rows


async def test_subscription_values_types_units_timestamps_and_quality(sim, tmp_path):
    ctx, ch = make_ctx(tmp_path)
    [unit] = build_subscription(sub_cfg(sim.endpoint), ctx)
    t0 = time.time_ns()
    rows = by_name(ctx, await collect_subscription(unit, ch, 2.5))
    t1 = time.time_ns()

    specs = {s.spec.name: s.spec for s in ctx.catalog}
    assert specs["spindle_speed"].unit == "/min" and specs["spindle_speed"].dtype is DataType.float64
    assert specs["spindle_speed"].extra["eu_range"] == [0.0, 12000.0]
    assert specs["spindle_override"].unit == "%"
    assert specs["coolant_temp"].unit == "Cel"  # the configured unit wins over EngineeringUnits
    assert specs["is_rotating"].dtype is DataType.bool
    assert specs["program"].dtype is DataType.string and specs["program_state"].dtype is DataType.string
    assert specs["channel_state"].dtype is DataType.int32  # enumeration
    assert specs["parts"].dtype is DataType.uint32
    assert specs["spindle_speed"].extra["node_id"] == SIM + "Monitoring/Spindle/ActualSpeed"

    for name in ("spindle_speed", "spindle_override", "is_rotating", "program", "program_state", "channel_state", "parts"):
        assert rows.get(name), f"no values for {name}"
        for value, text, q, src, srv in rows[name]:
            assert q == 0
            assert t0 - 30e9 < src < t1 + 5e9 and t0 - 30e9 < srv < t1 + 5e9
    assert len(rows["spindle_speed"]) >= 5  # it changes every 100 ms while cutting or between cycles
    assert {r[1] for r in rows["program"]} == {"O1001_BRACKET"}
    assert {r[1] for r in rows["program_state"]} <= {"Running", "Ended", "Initializing"}
    assert {r[0] for r in rows["is_rotating"]} <= {0.0, 1.0}
    assert rows["spindle_override"][0][0] == 100.0
    # the unknown node is kept as data: one gap row with its status, the others are unaffected
    assert [(r[0], r[2]) for r in rows["ghost"]] == [(None, BAD_NODE_ID_UNKNOWN)]
    assert ctx.metrics.gaps == 1


async def test_polling_reads_every_node_in_chunks(sim, tmp_path):
    ctx, ch = make_ctx(tmp_path)
    [unit] = build_polling(poll_cfg(sim.endpoint, max_nodes_per_read=3), ctx)
    await unit.connect()
    try:
        assert len(unit._reads) == 3  # 8 resolvable nodes, 3 per Read
        await unit.poll()
        await unit.poll()
    finally:
        await unit.aclose()
    chunks = drain(ch)
    rows = by_name(ctx, chunks)
    assert all(len(rows[n["name"]]) == 2 for n in NODES), {k: len(v) for k, v in rows.items()}
    assert rows["ghost"][0][2] == BAD_NODE_ID_UNKNOWN
    assert rows["program"][0][1] == "O1001_BRACKET"
    assert all(r[2] == 0 and r[4] > 0 for n, v in rows.items() if n != "ghost" for r in v)


async def test_server_max_nodes_per_read_is_used_by_default(sim, tmp_path):
    ctx, _ = make_ctx(tmp_path)
    [unit] = build_polling(poll_cfg(sim.endpoint), ctx)
    await unit.connect()
    try:
        assert unit.max_nodes_per_read >= 1 and len(unit._reads) == 1
    finally:
        await unit.aclose()


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"])
async def test_every_security_mode_and_policy(sim, tmp_path, mode, policy):
    ctx, ch = make_ctx(tmp_path)
    cfg = poll_cfg(sim.endpoint, nodes=NODES[:2], security={
        "mode": mode, "policy": policy, "server_fingerprint_sha256": sim.info["server_fingerprint_sha256"]})
    [unit] = build_polling(cfg, ctx)
    await unit.connect()
    try:
        assert unit._client.security_policy.URI.endswith(policy)
        await unit.poll()
    finally:
        await unit.aclose()
    rows = by_name(ctx, drain(ch))
    assert rows["spindle_override"][0][0] == 100.0 and rows["spindle_override"][0][2] == 0


async def test_client_certificate_is_generated_once_and_kept(sim, tmp_path):
    ctx, _ = make_ctx(tmp_path)
    cfg = poll_cfg(sim.endpoint, nodes=NODES[:1], security={
        "mode": "SignAndEncrypt", "server_fingerprint_sha256": sim.info["server_fingerprint_sha256"]})
    [unit] = build_polling(cfg, ctx)
    await unit.connect()
    await unit.aclose()
    cert = tmp_path / "state" / "opcua-pki" / "client_cert.der"
    first = cert.read_bytes()
    await unit.connect()
    await unit.aclose()
    assert cert.read_bytes() == first


async def test_untrusted_server_certificate_is_rejected_with_a_clear_error(sim, tmp_path):
    ctx, _ = make_ctx(tmp_path)
    trust = tmp_path / "trusted"
    trust.mkdir()
    cfg = poll_cfg(sim.endpoint, nodes=NODES[:1], security={"mode": "SignAndEncrypt", "trust_dir": str(trust)})
    [unit] = build_polling(cfg, ctx)
    with pytest.raises(SecurityError, match="server certificate is not trusted") as ei:
        await unit.connect()
    assert sim.info["server_fingerprint_sha256"] in str(ei.value)
    assert unit._client is None
    rejected = list((tmp_path / "state" / "opcua-pki" / "rejected").iterdir())
    assert len(rejected) == 1
    # the operator reviews it and moves it to the trust directory: now it connects
    shutil.move(str(rejected[0]), trust / "sim.der")
    await unit.connect()
    await unit.poll()
    await unit.aclose()


async def test_wrong_fingerprint_is_rejected(sim, tmp_path):
    ctx, _ = make_ctx(tmp_path)
    cfg = poll_cfg(sim.endpoint, nodes=NODES[:1], security={"mode": "Sign", "server_fingerprint_sha256": "ab" * 32})
    [unit] = build_polling(cfg, ctx)
    with pytest.raises(SecurityError, match="not trusted"):
        await unit.connect()


async def test_username_identity_accepted_and_wrong_password_rejected_without_leaking(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sec = {"mode": "SignAndEncrypt", "server_fingerprint_sha256": sim.info["server_fingerprint_sha256"]}
    ctx, ch = make_ctx(tmp_path)
    good = poll_cfg(sim.endpoint, nodes=NODES[:1], security=sec,
                    identity={"kind": "username", "username": "operator", "password": "s3cret-pw"})
    [unit] = build_polling(good, ctx)
    await unit.connect()
    await unit.poll()
    await unit.aclose()
    assert len(drain(ch)) == 1
    bad = poll_cfg(sim.endpoint, nodes=NODES[:1], security=sec,
                   identity={"kind": "username", "username": "operator", "password": "wrong-pw-123"})
    assert "wrong-pw-123" not in repr(bad) and "wrong-pw-123" not in str(bad.model_dump())
    [unit] = build_polling(bad, ctx)
    with pytest.raises(SecurityError, match="identity rejected") as ei:
        await unit.connect()
    assert "wrong-pw-123" not in str(ei.value)
    assert "wrong-pw-123" not in caplog.text and "s3cret-pw" not in caplog.text


async def test_certificate_identity(sim, tmp_path):
    import socket

    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, cert = tmp_path / "user_key.pem", tmp_path / "user_cert.der"
    await setup_self_signed_certificate(key, cert, "urn:axedge:user", socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {})
    ctx, ch = make_ctx(tmp_path)
    cfg = poll_cfg(sim.endpoint, nodes=NODES[:1], identity={"kind": "certificate", "certificate": str(cert), "private_key": str(key)},
                   security={"mode": "SignAndEncrypt", "server_fingerprint_sha256": sim.info["server_fingerprint_sha256"]})
    [unit] = build_polling(cfg, ctx)
    await unit.connect()
    await unit.poll()
    await unit.aclose()
    assert len(drain(ch)) == 1


async def test_numeric_namespace_index_needs_opt_in(sim, tmp_path):
    ctx, _ = make_ctx(tmp_path)
    cfg = poll_cfg(sim.endpoint, nodes=[{"name": "x", "node_id": "ns=5;s=MachineTool1.Production/PartCounter"}])
    [unit] = build_polling(cfg, ctx)
    with pytest.raises(ConfigError, match="namespace index"):
        await unit.connect()
    await unit.aclose()


async def test_values_are_arrays_not_objects(sim, tmp_path):
    ctx, ch = make_ctx(tmp_path)
    [unit] = build_polling(poll_cfg(sim.endpoint), ctx)
    await unit.connect()
    await unit.poll()
    await unit.aclose()
    for c in drain(ch):
        assert c.signal_id.dtype == np.int32 and c.quality.dtype == np.uint32 and c.value.dtype == np.float64
        assert c.source_time_ns.dtype == np.int64 and c.server_time_ns is None or c.server_time_ns.dtype == np.int64


async def test_absolute_deadband_per_node(sim, tmp_path):
    hours = SIM + "Monitoring/MachineTool/PowerOnDuration"  # grows by ~3e-5 h every 100 ms
    ctx, ch = make_ctx(tmp_path)
    cfg = sub_cfg(sim.endpoint, nodes=[
        {"name": "hours_all", "node_id": hours},
        {"name": "hours_deadband", "node_id": hours, "deadband_type": "absolute", "deadband_value": 1.0},
    ])
    [unit] = build_subscription(cfg, ctx)
    rows = by_name(ctx, await collect_subscription(unit, ch, 2.0))
    assert len(rows["hours_all"]) >= 8
    assert len(rows["hours_deadband"]) == 1  # the initial value only: it moves far less than 1 h


def test_discovery_over_sign_and_encrypt_with_username(sim, tmp_path, monkeypatch, capsys):
    from connectors.opcua.discover import main as discover
    from edge_agent.config import load_config

    monkeypatch.setenv("MILL_PW", "s3cret-pw")
    out = tmp_path / "secure.yaml"
    fp = sim.info["server_fingerprint_sha256"]
    rc = discover([sim.endpoint, "--out", str(out), "--root", "Objects/Machines", "--security", "SignAndEncrypt",
                   "--policy", "Aes128_Sha256_RsaOaep", "--server-fingerprint", fp, "--username", "operator",
                   "--password-env", "MILL_PW", "--state-dir", str(tmp_path / "state")])
    assert rc == 0
    text = out.read_text()
    assert "s3cret-pw" not in text and "${env:MILL_PW}" in text and "s3cret-pw" not in capsys.readouterr().err
    [section] = load_config(out).connectors
    assert section.security.mode.value == "SignAndEncrypt" and section.security.server_fingerprint_sha256 == fp
    assert section.identity.username == "operator" and section.identity.password.get_secret_value() == "s3cret-pw"
    monkeypatch.setenv("MILL_PW", "wrong")
    rc = discover([sim.endpoint, "--out", str(tmp_path / "x.yaml"), "--security", "SignAndEncrypt", "--server-fingerprint", fp,
                   "--username", "operator", "--password-env", "MILL_PW", "--state-dir", str(tmp_path / "state")])
    assert rc == 1 and "identity rejected" in capsys.readouterr().err
