"""The casting line simulator as a separate process (``axedge sim casting-line``): free port
reported as JSON, scheduled and commanded faults, ground-truth labels, RTU over TCP."""

import asyncio
import json
import subprocess
import sys

import pytest
import yaml

from hardware.casting_line import CastingLineSim


def start_sim(*args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "sim", "casting-line", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    info = json.loads(proc.stdout.readline())
    return proc, info


async def read_melt(port: int, framer="socket"):
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.framer import FramerType

    c = AsyncModbusTcpClient("127.0.0.1", port=port, framer=FramerType(framer), timeout=1, retries=0, reconnect_delay=0)
    assert await c.connect()
    try:
        rr = await c.read_holding_registers(0, count=12, device_id=1)
        return rr
    finally:
        c.close()


async def test_process_serves_and_writes_labels_for_scheduled_and_commanded_faults(tmp_path):
    faults = tmp_path / "faults.yaml"
    faults.write_text(yaml.safe_dump([
        {"kind": "thermocouple_drift", "start_secs": 0.1, "duration_secs": 0.4, "params": {"rate_per_sec": 2.0}},
        {"kind": "sensor_stuck", "start_secs": 0.2, "duration_secs": 0.3, "params": {"signal": "ladle_weight"}},
    ]))
    labels = tmp_path / "labels.jsonl"
    proc, info = start_sim("--faults", str(faults), "--labels", str(labels), "--control-port", "0",
                           "--speed", "10", "--seed", "4", "--duration-secs", "1.5")
    try:
        assert info["unit_id"] == 1 and info["port"] > 0
        rr = await read_melt(info["port"])
        assert not rr.isError() and len(rr.registers) == 12
        reader, writer = await asyncio.open_connection("127.0.0.1", info["control_port"])
        writer.write(b'{"inject": "stopper_sticking", "duration_secs": 0.3}\n{"inject": "nonsense"}\n')
        await writer.drain()
        assert json.loads(await reader.readline()) == {"ok": True}
        bad = json.loads(await reader.readline())
        assert bad["ok"] is False and "unknown fault kind 'nonsense'" in bad["error"]
        writer.close()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    got = [json.loads(x) for x in labels.read_text().splitlines()]
    by_kind = {g["kind"]: g for g in got}
    assert set(by_kind) == {"thermocouple_drift", "sensor_stuck", "stopper_sticking"}
    assert by_kind["sensor_stuck"]["signals"] == ["ladle_weight"]
    assert by_kind["stopper_sticking"]["source"] == "command"
    drift = by_kind["thermocouple_drift"]
    assert drift["signals"] == ["melt_temperature"] and drift["params"] == {"rate_per_sec": 2.0}
    assert 0.35e9 <= drift["end_ns"] - drift["start_ns"] <= 1.5e9
    assert drift["start"] < drift["end"]


def test_bad_fault_file_is_an_error_not_a_crash(tmp_path):
    faults = tmp_path / "faults.yaml"
    faults.write_text(yaml.safe_dump([{"kind": "meteor_strike", "start_secs": 1}]))
    r = subprocess.run([sys.executable, "-m", "hardware.casting_line", "--port", "0", "--faults", str(faults)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "unknown fault kind 'meteor_strike'" in r.stderr


async def test_rtu_over_tcp_transport():
    sim = CastingLineSim(port=0, tick_secs=None, transport="rtu_over_tcp")
    async with sim:
        rr = await read_melt(sim.port, framer="rtu")
    assert not rr.isError()
    assert rr.registers[10] == sim.served["machine_state"]


async def test_faults_change_the_process_as_labelled():
    async with CastingLineSim(port=0, tick_secs=None, seed=1) as sim:
        for _ in range(20):
            sim.step(0.5)
        before = sim.served["melt_temperature"]
        task = sim.inject("melt_temperature_drop", 0.2, rate_per_sec=20.0)
        await asyncio.sleep(0.01)
        for _ in range(10):
            sim.step(0.5)  # 5 s of process time at an extra 20 Cel/s
        assert sim.served["melt_temperature"] < before - 90
        await task
        stuck = sim.inject("sensor_stuck", 0.2, signal="mould_temperature")
        await asyncio.sleep(0.01)
        frozen = sim.served["mould_temperature"]
        for _ in range(20):
            sim.step(0.5)
            assert sim.served["mould_temperature"] == frozen
        await stuck
        with pytest.raises(ValueError, match="unknown signal"):
            sim.inject("sensor_stuck", 1.0, signal="nope")
    assert [lab["kind"] for lab in sim.labels] == ["melt_temperature_drop", "sensor_stuck"]


def test_process_dynamics_pour_cool_and_refill():
    sim = CastingLineSim(port=0, tick_secs=None, seed=2)
    weights, states, cycles = [], set(), []
    for _ in range(int(700 / 0.5)):  # ~12 minutes of process time
        sim.step(0.5)
        weights.append(sim.served["ladle_weight"])
        states.add(sim.served["machine_state"])
        cycles.append(sim.served["cycle_counter"])
    assert states == {1, 2, 3}  # waiting, pouring, refill
    assert min(weights) <= 100 and max(weights) == pytest.approx(1500.0)
    assert cycles == sorted(cycles) and cycles[-1] > 56  # more than one ladle's worth of moulds
