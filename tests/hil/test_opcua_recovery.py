"""OPC UA recovery and fault injection: server killed and restarted (namespace indices shifted),
silent subscription, bad sensor status, slow server, missing endpoint. Driven through the
runtime's RunningConnector (its capped, jittered backoff owns the reconnects)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asyncua import ua

from connectors.base import ConnectorContext
from connectors.opcua.config import OpcUaPollingConfig, OpcUaSubscriptionConfig
from connectors.opcua.connector import build_polling, build_subscription
from edge_agent.core.channel import BoundedChannel
from edge_agent.errors import ConnectorTimeout, NotConnected, SecurityError
from edge_agent.runtime.backoff import Backoff
from edge_agent.runtime.running import RunningConnector
from edge_agent.signals import SignalCatalog
from hardware.machine_tool import NS_SIM, MachineToolProcess, MachineToolThread

pytestmark = pytest.mark.timeout(120)

SIM = f"nsu={NS_SIM};s=MachineTool1."
NODES = [
    {"name": "speed", "node_id": SIM + "Monitoring/Spindle/ActualSpeed"},
    {"name": "load", "node_id": SIM + "Monitoring/Spindle/Load"},
    {"name": "vibration", "node_id": SIM + "Monitoring/Spindle/VibrationRMS"},
    {"name": "override", "browse_path": "Machines/MachineTool1/Monitoring/Spindle/Override"},
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """One in-process simulator for the module (on its own thread), endpoint without security."""
    labels = tmp_path_factory.mktemp("mt") / "labels.jsonl"
    with MachineToolThread(update_hz=20, cycle_secs=2, labels_path=labels) as t:
        yield t


def make_ctx(tmp_path):
    ch = BoundedChannel(100_000, 10_000_000)
    return ConnectorContext("mill", SignalCatalog(), ch.send, state_dir=tmp_path / "state"), ch


def sub_cfg(endpoint, **kw):
    d = dict(id="mill", type="opcua_subscription", asset="plant1/machining/line1/mill01", endpoint=endpoint, nodes=NODES,
             publishing_interval_ms=100, sampling_interval_ms=100, keepalive_count=5, request_timeout_secs=3)
    d.update(kw)
    return OpcUaSubscriptionConfig(**d)


def poll_cfg(endpoint, **kw):
    d = dict(id="mill", type="opcua_polling", asset="plant1/machining/line1/mill01", endpoint=endpoint, nodes=NODES,
             request_timeout_secs=3)
    d.update(kw)
    return OpcUaPollingConfig(**d)


class Rows:
    """Drains the channel into (name, value, quality, receive_ns, text) tuples."""

    def __init__(self, ctx, ch):
        self.ctx, self.ch, self.rows = ctx, ch, []

    def pump(self):
        while (c := self.ch.recv_nowait()) is not None:
            for k in range(len(c)):
                ok = c.valid is None or bool(c.valid[k])
                self.rows.append((self.ctx.catalog.get(int(c.signal_id[k])).spec.name, c.value[k] if ok else None,
                                  int(c.quality[k]), int(c.receive_time_ns[k]), c.text[k] if c.text is not None else None))

    async def wait_for(self, pred, timeout, what):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.pump()
            if any(pred(r) for r in self.rows):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def test_server_killed_and_restarted_values_flow_again_without_restarting_the_agent(tmp_path):
    proc = MachineToolProcess("--update-hz", "10", "--cycle-secs", "2", log_path=tmp_path / "sim.log")
    await asyncio.to_thread(proc.start)
    ctx, ch = make_ctx(tmp_path)
    [unit] = build_subscription(sub_cfg(proc.endpoint), ctx)
    rc = RunningConnector(unit, backoff=Backoff(0.2, 2.0))
    task = asyncio.create_task(rc.run())
    rows = Rows(ctx, ch)
    try:
        await rows.wait_for(lambda r: r[0] == "speed" and r[2] == 0, 20, "first values")
        ns_before = unit._node_ids[0].NamespaceIndex
        proc.kill()  # SIGKILL: no goodbye on the socket
        await asyncio.sleep(1.0)
        # the new server process loads its namespaces in another order: indices shift by 3
        await asyncio.to_thread(proc.start, "--namespace-offset", "3")
        t_up = time.time_ns()
        for name in ("speed", "override"):
            await rows.wait_for(lambda r, n=name: r[0] == n and r[2] == 0 and r[3] > t_up, 30, f"{name} after restart")
        assert rc.state == "connected"
        assert unit._node_ids[0].NamespaceIndex == ns_before + 3  # re-resolved by namespace URI
        after = [r for r in rows.rows if r[3] > t_up]
        assert not [r for r in after if r[2] == ua.StatusCodes.BadNodeIdUnknown]
        assert sum(ctx.metrics.errors.values()) >= 1  # the lost session was reported, then recovered
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        proc.stop()


async def test_silent_subscription_is_detected_and_recreated(sim, tmp_path):
    ctx, ch = make_ctx(tmp_path)
    [unit] = build_subscription(sub_cfg(sim.endpoint, silence_timeout_secs=1.5), ctx)
    rc = RunningConnector(unit, backoff=Backoff(0.2, 1.0))
    task = asyncio.create_task(rc.run())
    rows = Rows(ctx, ch)
    try:
        await rows.wait_for(lambda r: r[0] == "speed", 15, "first values")
        # the server forgets the subscription while the session stays up: "connected but silent"
        svc = sim.sim.server.iserver.subscription_service
        await sim.call(lambda: svc.delete_subscriptions(list(svc.subscriptions)))
        t_del = time.time_ns()
        await rows.wait_for(lambda r: r[0] == "speed" and r[3] > t_del + 1e9, 20, "values after the silence")
        assert ctx.metrics.errors.get("silent_subscription", 0) >= 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_bad_sensor_status_is_kept_per_value_and_labelled(sim, tmp_path):
    ctx, ch = make_ctx(tmp_path)
    [unit] = build_subscription(sub_cfg(sim.endpoint), ctx)
    await unit.connect()
    task = asyncio.create_task(unit.run())
    rows = Rows(ctx, ch)
    try:
        await rows.wait_for(lambda r: r[0] == "load", 10, "first values")
        await sim.call(sim.sim.inject, "sensor_failure", duration_secs=1.0)
        await rows.wait_for(lambda r: r[0] == "vibration" and r[2] == ua.StatusCodes.BadSensorFailure, 10, "bad status")
        t_bad = time.time_ns()
        await rows.wait_for(lambda r: r[0] == "vibration" and r[2] == 0 and r[3] > t_bad, 10, "recovered sensor")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await unit.aclose()
    bad = [r for r in rows.rows if r[2] == ua.StatusCodes.BadSensorFailure]
    assert {r[0] for r in bad} == {"vibration"} and all(r[1] is None or r[1] == 0.0 for r in bad)
    assert any(r[0] == "load" and r[2] == 0 and r[3] >= bad[0][3] for r in rows.rows)  # the others keep flowing
    labels = [json.loads(line) for line in sim.sim.labels_path.read_text().splitlines()]
    [label] = [lb for lb in labels if lb["kind"] == "sensor_failure"]
    assert label["end"] > label["start"] and "Monitoring/Spindle/VibrationRMS" in label["signals"]


async def test_polling_survives_slow_server_and_restart_with_shifted_namespaces(sim, tmp_path):
    ctx, ch = make_ctx(tmp_path)
    [unit] = build_polling(poll_cfg(sim.endpoint, request_timeout_secs=0.3), ctx)
    await unit.connect()
    try:
        await unit.poll()
        await sim.call(sim.sim.inject, "slow_server", duration_secs=1.0)
        with pytest.raises(ConnectorTimeout, match="timed out"):
            await unit.poll()
        await asyncio.sleep(1.5)
        await unit.connect()  # what the runtime does after a transient error
        await unit.poll()
        before, restarts = unit._node_ids[0].NamespaceIndex, sim.sim.restarts
        await sim.call(sim.sim.inject, "server_restart", duration_secs=0.3)  # the fault: down, then back
        with pytest.raises((NotConnected, ConnectorTimeout)):
            await unit.poll()
        t0 = time.monotonic()
        while (sim.sim.restarts == restarts or sim.sim.server is None) and time.monotonic() - t0 < 60:
            await asyncio.sleep(0.1)
        await unit.connect()
        await unit.poll()
        assert unit._node_ids[0].NamespaceIndex == before + 1
    finally:
        await unit.aclose()
    rows = Rows(ctx, ch)
    rows.pump()
    assert [r for r in rows.rows if r[0] == "override"][-1][1:3] == (100.0, 0)
    assert {"slow_server", "server_restart"} <= {lb["kind"] for lb in sim.sim.labels}


async def test_missing_endpoint_is_a_clear_security_error(sim, tmp_path):
    ctx, _ = make_ctx(tmp_path)
    cfg = poll_cfg(sim.endpoint, security={"mode": "Sign", "server_fingerprint_sha256": "00" * 32})
    [unit] = build_polling(cfg, ctx)
    with pytest.raises(SecurityError, match="no endpoint with security Sign/Basic256Sha256") as ei:
        await unit.connect()
    assert "None/None" in str(ei.value)


async def test_machining_faults_change_the_physics_and_are_labelled(sim, tmp_path):
    nodes = [
        {"name": "vibration", "node_id": SIM + "Monitoring/Spindle/VibrationRMS"},
        {"name": "flow", "node_id": SIM + "Monitoring/Coolant/Flow"},
        {"name": "message", "node_id": SIM + "Notification/Messages/LastMessage"},
    ]
    ctx, ch = make_ctx(tmp_path)
    [unit] = build_polling(poll_cfg(sim.endpoint, nodes=nodes), ctx)
    rows = Rows(ctx, ch)

    async def sample(secs):
        rows.rows.clear()
        t0 = time.monotonic()
        while time.monotonic() - t0 < secs:
            await unit.poll()
            await asyncio.sleep(0.1)
        rows.pump()
        by = {}
        for name, value, _q, _t, text in rows.rows:
            by.setdefault(name, []).append(value if text is None else text)
        return by

    await unit.connect()
    try:
        base = await sample(2.5)  # more than one machining cycle (cycle_secs=2)
        await sim.call(sim.sim.inject, "bearing_fault", duration_secs=4.0)
        await sim.call(sim.sim.inject, "coolant_failure", duration_secs=4.0)
        fault = await sample(2.5)
    finally:
        await unit.aclose()
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(fault["vibration"]) > mean(base["vibration"]) + 1.5
    assert mean(base["flow"]) > 10 and mean(fault["flow"]) < 1
    assert set(base["message"]) == {""} and "E2031 coolant flow low" in set(fault["message"])
    await asyncio.sleep(2.0)
    labels = {lb["kind"]: lb for lb in sim.sim.labels}
    assert labels["coolant_failure"]["signals"] == ["Monitoring/Coolant/Flow", "Monitoring/Coolant/Temperature"]
    assert labels["bearing_fault"]["end_ns"] - labels["bearing_fault"]["start_ns"] >= 3.9e9
