"""The Modbus connector against the simulated casting line over real loopback sockets.

Driven through a real ConnectorContext whose ``send`` feeds a real BoundedChannel; the chunks
read back are compared exactly with what the simulator served."""

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from connectors.base import ConnectorContext
from connectors.modbus.connector import build
from dataset_builder.format import Quality
from edge_agent.config import load_config_text
from edge_agent.core.channel import BoundedChannel
from edge_agent.errors import ConnectorTimeout, NotConnected
from edge_agent.signals import SignalCatalog
from hardware.casting_line import MAP_PATH, CastingLineSim

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "casting-line.yaml"


def example_config(port: int, **device_overrides):
    data = yaml.safe_load(EXAMPLE.read_text())
    dev = data["connectors"][0]["devices"][0]
    dev["port"] = port
    dev.update(device_overrides)
    return load_config_text(yaml.safe_dump(data, sort_keys=False), fname="casting-line.yaml").connectors[0]


def make_ctx():
    ch = BoundedChannel(10_000, 10_000_000)
    return ConnectorContext("casting-plc", SignalCatalog(), ch.send), ch


async def drain(ch):
    out = []
    while len(ch):
        out.append(await ch.recv())
    return out


def latest(ctx, chunks):
    """name -> (value or text, quality, valid) of the last row per signal."""
    out = {}
    for c in chunks:
        for i in range(len(c)):
            name = ctx.catalog.get(int(c.signal_id[i])).spec.name
            valid = True if c.valid is None else bool(c.valid[i])
            text = c.text[i] if c.text is not None else None
            out[name] = (text if text is not None else float(c.value[i]), int(c.quality[i]), valid)
    return out


def test_example_config_signals_are_the_simulator_register_map():
    example = yaml.safe_load(EXAMPLE.read_text())["connectors"][0]["devices"][0]
    regmap = yaml.safe_load(MAP_PATH.read_text())
    assert example["units"][0]["signals"] == regmap["signals"]
    assert (example["byte_order"], example["addressing"], example["units"][0]["unit_id"]) == (
        regmap["byte_order"], regmap["addressing"], regmap["unit_id"],
    )


@pytest.mark.parametrize("conc", [1, 3], ids=["sequential", "3-in-flight"])
async def test_scripted_sequence_every_value_equals_what_the_simulator_served(conc):
    async with CastingLineSim(port=0, tick_secs=None, seed=3) as sim:
        cfg = example_config(sim.port, max_concurrent_requests=conc)
        ctx, ch = make_ctx()
        (unit,) = build(cfg, ctx)
        await unit.connect()
        try:
            states = set()
            for _ in range(40):  # ~40 process steps of 1.3 s: waiting, pouring, cycles counted
                sim.step(1.3)
                await unit.poll()
                got = latest(ctx, await drain(ch))
                assert set(got) == set(sim.served)
                for name, served in sim.served.items():
                    value, quality, valid = got[name]
                    assert quality == Quality.GOOD, name
                    if isinstance(served, str):
                        assert value == served, name
                    else:
                        assert valid and value == float(served), (name, value, served)
                states.add(sim.served["machine_state"])
            assert {1, 2} <= states and sim.served["cycle_counter"] >= 3
        finally:
            await unit.aclose()
    # 2 poll groups: fast (one holding block) + default (holding, input, coil, discrete input)
    assert unit.requests == 40 * 5


@pytest.mark.parametrize("conc", [1, 3], ids=["sequential", "3-in-flight"])
async def test_one_chunk_per_cycle_and_source_time_is_response_time(conc):
    async with CastingLineSim(port=0, tick_secs=None) as sim:
        ctx, ch = make_ctx()
        (unit,) = build(example_config(sim.port, max_concurrent_requests=conc), ctx)
        await unit.connect()
        t0 = time.time_ns()
        await unit.poll_group("default")
        t1 = time.time_ns()
        await unit.aclose()
        (chunk,) = await drain(ch)
        assert len(chunk) == len(sim.served) - 4  # every signal except the 4 in the fast group
        assert (chunk.source_time_ns >= t0).all() and (chunk.source_time_ns <= t1).all()
        assert (chunk.receive_time_ns == chunk.source_time_ns).all()


@pytest.mark.parametrize("conc", [1, 3], ids=["sequential", "3-in-flight"])
async def test_exception_response_marks_only_that_block_and_names_the_address(caplog, conc):
    async with CastingLineSim(port=0, tick_secs=None) as sim:
        data = yaml.safe_load(EXAMPLE.read_text())
        dev = data["connectors"][0]["devices"][0]
        dev["port"] = sim.port
        dev["max_concurrent_requests"] = conc
        dev["units"][0]["signals"].append({"name": "not_mapped", "table": "input", "address": 300, "type": "float32"})
        cfg = load_config_text(yaml.safe_dump(data), fname="x.yaml").connectors[0]
        ctx, ch = make_ctx()
        (unit,) = build(cfg, ctx)
        await unit.connect()
        with caplog.at_level("WARNING"):
            await unit.poll()
            await unit.poll()
        await unit.aclose()
        got = latest(ctx, await drain(ch))
        assert got["not_mapped"][1] == Quality.BAD_OUT_OF_RANGE and not got["not_mapped"][2]
        assert all(q == Quality.GOOD for n, (_, q, _) in got.items() if n != "not_mapped")
        assert ctx.metrics.errors == {"exception_response": 2}
        msgs = [r.getMessage() for r in caplog.records if "modbus read failed" in r.getMessage()]
        assert len(msgs) == 1  # logged once per state change, not every cycle
        assert f"device casting-line (127.0.0.1:{sim.port}) unit 1 input 300..301: exception 2 (illegal data address)" in msgs[0]


@pytest.mark.parametrize("conc", [1, 3], ids=["sequential", "3-in-flight"])
async def test_slow_device_times_out_with_bad_timeout_then_recovers(conc):
    async with CastingLineSim(port=0, tick_secs=None) as sim:
        ctx, ch = make_ctx()
        (unit,) = build(example_config(sim.port, request_timeout_secs=0.2, max_concurrent_requests=conc), ctx)
        await unit.connect()
        fault = sim.inject("slow_responses", 0.6, delay_secs=0.5)
        with pytest.raises(ConnectorTimeout, match="no response to any request"):
            await unit.poll_group("fast")
        chunks = await drain(ch)
        assert all((c.quality == Quality.BAD_TIMEOUT).all() and not c.valid.any() for c in chunks) and chunks
        await fault
        await unit.aclose()
        await unit.connect()  # what the runtime does after the transient error
        await unit.poll_group("fast")
        got = latest(ctx, await drain(ch))
        assert got["melt_temperature"] == (float(sim.served["melt_temperature"]), 0, True)
        await unit.aclose()
    assert [lab["kind"] for lab in sim.labels] == ["slow_responses"]


@pytest.mark.parametrize("conc", [1, 3], ids=["sequential", "3-in-flight"])
async def test_device_restart_raises_not_connected_with_gap_rows_then_reconnects(conc):
    async with CastingLineSim(port=0, tick_secs=None) as sim:
        ctx, ch = make_ctx()
        (unit,) = build(example_config(sim.port, max_concurrent_requests=conc), ctx)
        await unit.connect()
        await unit.poll()
        await drain(ch)
        restart = sim.inject("device_restart", 0.3)
        await asyncio.sleep(0.1)
        with pytest.raises(NotConnected):
            await unit.poll()
        gaps = await drain(ch)
        assert gaps and all((c.quality == Quality.BAD_NOT_CONNECTED).all() for c in gaps)
        assert ctx.metrics.gaps == sum(len(c) for c in gaps)
        await unit.aclose()
        with pytest.raises(NotConnected, match="unreachable"):
            await unit.connect()  # still down
        await restart
        await unit.connect()
        sim.step(2.0)
        await unit.poll()
        got = latest(ctx, await drain(ch))
        assert got["ladle_weight"] == (float(sim.served["ladle_weight"]), 0, True)
        await unit.aclose()
    (label,) = sim.labels
    assert label["kind"] == "device_restart" and label["end_ns"] - label["start_ns"] >= 0.3e9
    assert "melt_temperature" in label["signals"]


@pytest.mark.parametrize("conc", [1, 3], ids=["sequential", "3-in-flight"])
async def test_garbage_frames_are_bad_not_fatal(conc):
    async with CastingLineSim(port=0, tick_secs=None) as sim:
        ctx, ch = make_ctx()
        (unit,) = build(example_config(sim.port, request_timeout_secs=0.2, max_concurrent_requests=conc), ctx)
        await unit.connect()
        fault = sim.inject("garbage_frames", 1.5)
        await asyncio.sleep(0.01)  # let the fault start
        with pytest.raises(ConnectorTimeout):
            await unit.poll_group("default")  # 4 blocks x 0.2 s timeout, all garbage
        bad = await drain(ch)
        assert bad and all(not c.valid.any() for c in bad)
        await fault
        await unit.aclose()
        await unit.connect()
        await unit.poll()
        got = latest(ctx, await drain(ch))
        assert all(q == Quality.GOOD for _, q, _ in got.values())
        await unit.aclose()


async def test_concurrent_requests_overlap_on_separate_connections_and_keep_block_order():
    async with CastingLineSim(port=0, tick_secs=None) as sim:
        ctx, ch = make_ctx()
        (seq,) = build(example_config(sim.port), ctx)
        (unit,) = build(example_config(sim.port, max_concurrent_requests=3), ctx)
        for u in (seq, unit):
            await u.connect()
        assert [link.connected for link in unit._links] == [True, True, True]
        await seq.poll_group("default")
        sim.server.response_delay_secs = 0.05  # every read waits: concurrent ones overlap in the device
        await unit.poll_group("default")  # 4 blocks over 3 connections
        sim.server.response_delay_secs = 0.0
        assert sim.server.max_in_flight == 3
        a, b = await drain(ch)
        assert (a.signal_id == b.signal_id).all()  # same rows in the same (block) order
        assert np.array_equal(a.value, b.value, equal_nan=True)  # NaN: text rows
        assert np.array_equal(a.valid, b.valid) and a.text == b.text and (a.quality == 0).all()
        for u in (seq, unit):
            await u.aclose()


async def test_device_closing_extra_connections_is_polled_over_the_one_it_keeps():
    async with CastingLineSim(port=0, tick_secs=None) as sim:
        sim.server.max_connections = 1  # a PLC with a session limit: accepts, then closes the others
        ctx, ch = make_ctx()
        (unit,) = build(example_config(sim.port, max_concurrent_requests=3), ctx)
        await unit.connect()
        for _ in range(3):
            await unit.poll()  # no NotConnected: the device is there, only the extra sessions are not
        got = latest(ctx, await drain(ch))
        assert set(got) == set(sim.served) and all(q == Quality.GOOD for _, q, _ in got.values())
        errors = ctx.metrics.errors
        assert errors.get("extra_connection_refused", 0) + errors.get("extra_connection_lost", 0) == 2
        assert set(errors) <= {"extra_connection_refused", "extra_connection_lost"} and ctx.metrics.gaps == 0
        assert unit._link.connected and not any(link.connected for link in unit._links[1:])
        await unit.aclose()


async def test_close_after_poll_and_pause_between_requests():
    async with CastingLineSim(port=0, tick_secs=None) as sim:
        ctx, ch = make_ctx()
        (unit,) = build(example_config(sim.port, connection="close_after_poll", pause_between_requests_secs=0.01), ctx)
        await unit.connect()
        for _ in range(3):
            await unit.poll()
            assert not unit._link.connected
        got = latest(ctx, await drain(ch))
        assert got["recipe_number"] == (4711.0, 0, True)
        await unit.aclose()


@pytest.mark.parametrize("conc", [1, 3], ids=["sequential", "3-in-flight"])
async def test_fast_polling_unit_stops_promptly_when_cancelled(conc):
    # a cancel that lands while a response arrives used to be swallowed by asyncio.wait_for in
    # pymodbus (Python 3.11), leaving the unit polling through agent shutdown
    async with CastingLineSim(port=0, tick_secs=None) as sim:
        ctx, ch = make_ctx()
        cfg = example_config(
            sim.port, poll_interval_secs=0.001, poll_groups=[{"name": "fast", "poll_interval_secs": 0.001}], max_concurrent_requests=conc
        )
        (unit,) = build(cfg, ctx)
        await unit.connect()
        for _ in range(25):
            task = asyncio.create_task(unit.run())
            await asyncio.sleep(0.03)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert task in done and task.cancelled()
            await drain(ch)
        await unit.aclose()
