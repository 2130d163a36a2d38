"""Modbus benchmark: a 1,000-signal register map served by the device simulator (its own process).

Prints JSON with
* requests per poll cycle after the read planner, against one request per signal;
* registers/s through the connector (poll loop -> ConnectorContext -> channel, drained) and
  end to end through the agent (Modbus -> core -> durable buffer -> Parquet), each against a bare
  pymodbus read loop over the same blocks in the same run (target ratio >= 0.8);
* each twice: with ``max_concurrent_requests: 1`` (one request after the other, exactly the
  bare loop's access pattern) and with ``--concurrency N`` (N connections to the device, each
  one request at a time); a bare pymodbus loop over N connections is reported beside it so the
  gain from concurrency is not mistaken for a cheaper connector;
* the connector's own Modbus TCP client alone (no decoding), to split the wire's cost from
  the connector's work, and the CPU per register of each stage (``cpu_us_per_register``);
* the same per CPU second of this process (``cpu_ratio_vs_bare``, ``cpu_us_per_register``): on
  a busy machine wall-clock ratios swing with other processes, the CPU cost per register does not.

"Registers" counts 16-bit words on the wire: register blocks by their length, bit blocks by
ceil(bits / 16).

    .venv/bin/python bench/modbus.py [--secs 3] [--signals 1000] [--concurrency 3] [--buffer sqlite|memory]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time

import yaml

TYPES = [("float32", 2, "holding"), ("int16", 1, "holding"), ("uint32", 2, "input"), ("bool", 1, "coil")]


def register_map(n: int) -> list[dict]:
    """``n`` signals: 40 % float32, 30 % int16 (holding), 20 % uint32 (input), 10 % coils, with a
    hole every 50 signals so the planner has gaps to bridge or split on."""
    sigs, next_addr = [], {"holding": 0, "input": 0, "coil": 0}
    shares = [0.4, 0.3, 0.2, 0.1]
    counts = [int(n * s) for s in shares]
    counts[0] += n - sum(counts)
    k = 0
    for (t, width, table), c in zip(TYPES, counts):
        for i in range(c):
            if i and i % 50 == 0:
                next_addr[table] += 20 if table != "coil" else 300
            s = {"name": f"s{k}", "table": table, "address": next_addr[table]}
            if t != "bool":
                s["type"] = t
            sigs.append(s)
            next_addr[table] += width
            k += 1
    return sigs


def _serve(signals: list[dict], conn) -> None:
    from hardware._modbus_server import ModbusDeviceServer, RegisterImage, encode

    async def main():
        image = RegisterImage()
        for i, s in enumerate(signals):
            if s["table"] == "coil":
                image.declare("coil", s["address"], 1)
                image.set_bits("coil", s["address"], [i % 3 == 0])
            else:
                words = encode(i * 1.5 if s["type"] == "float32" else i, s["type"], "ABCD")
                image.declare(s["table"], s["address"], len(words))
                image.set_words(s["table"], s["address"], words)
        async with ModbusDeviceServer({1: image}) as srv:
            conn.send(srv.port)
            await asyncio.Event().wait()

    asyncio.run(main())


def section(port: int, signals: list[dict], concurrency: int = 1) -> dict:
    # polled back to back: a cycle takes ~10 ms, far over the interval, so the drift-free ticker
    # skips to the next grid point; a 0.1 ms grid keeps that wait out of the figure (a 1 ms grid
    # cost up to 1 ms per cycle, ~5 %)
    return {
        "id": "bench", "type": "modbus", "asset": "bench/line1",
        "devices": [{"name": "dev", "host": "127.0.0.1", "port": port, "poll_interval_secs": 0.0001,
                     "request_timeout_secs": 5.0, "max_concurrent_requests": concurrency,
                     "units": [{"unit_id": 1, "signals": signals}]}],
    }


def words(blocks) -> int:
    return sum(b.count if not b.table.is_bits else -(-b.count // 16) for b in blocks)


async def bare_loop(port: int, blocks, secs: float, connections: int = 1) -> tuple[int, float, float]:
    """Cycles of plain pymodbus reads over the same blocks, on ``connections`` clients that each
    take the next block of the cycle (1: one request after the other); returns (cycles, wall
    secs, CPU secs of this process)."""
    from pymodbus.client import AsyncModbusTcpClient

    clients = [AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0, reconnect_delay=0) for _ in range(connections)]
    for c in clients:
        await c.connect()

    async def reader(c, todo) -> None:
        fn = {"holding": c.read_holding_registers, "input": c.read_input_registers, "coil": c.read_coils}
        for i in todo:
            b = blocks[i]
            rr = await fn[b.table.value](b.start, count=b.count, device_id=1)
            assert not rr.isError()

    cycles, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < secs:
        if connections == 1:
            await reader(clients[0], range(len(blocks)))
        else:
            todo = iter(range(len(blocks)))
            await asyncio.gather(*(reader(c, todo) for c in clients))
        cycles += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    for c in clients:
        c.close()
    return cycles, elapsed, cpu


async def wire_loop(port: int, blocks, secs: float) -> tuple[int, float, float]:
    """The connector's own Modbus TCP client alone (no decoding, no chunks) over the same blocks:
    separates the cost of the wire from the connector's work on top of it."""
    from connectors.modbus.config import Table
    from connectors.modbus.transport import MbapClient

    fc = {Table.coil: 1, Table.discrete_input: 2, Table.holding: 3, Table.input: 4}
    c = MbapClient("127.0.0.1", port, 5.0, 0)
    await c.connect()
    cycles, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < secs:
        for b in blocks:
            got, _ = await c.read(1, fc[b.table], b.start, b.count)
            assert got == fc[b.table]
        cycles += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.close()
    return cycles, elapsed, cpu


class ConnectorLoop:
    """The Modbus connector polled back to back into a real channel that a task drains."""

    def __init__(self, cfg) -> None:
        from connectors.base import ConnectorContext
        from connectors.modbus.connector import build
        from edge_agent.core.channel import BoundedChannel
        from edge_agent.signals import SignalCatalog

        self.ch = BoundedChannel(1024, 10_000_000)
        (self.unit,) = build(cfg, ConnectorContext("bench", SignalCatalog(), self.ch.send))
        self.rows = 0

    async def __aenter__(self):
        await self.unit.connect()
        self._drain = asyncio.create_task(self._drainer())
        return self

    async def _drainer(self):
        while True:
            self.rows += len(await self.ch.recv())

    async def run(self, secs: float) -> tuple[int, float, float]:
        cycles, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < secs:
            await self.unit.poll()
            cycles += 1
        return cycles, time.perf_counter() - t0, time.process_time() - c0

    async def __aexit__(self, *exc):
        self._drain.cancel()
        await self.unit.aclose()


async def agent_run(port: int, signals: list[dict], secs: float, buffer: str, concurrency: int = 1) -> tuple[int, float, float, int, float]:
    """Requests done by the agent's Modbus unit inside a ``secs`` window after startup."""
    from edge_agent.config import load_config_text
    from edge_agent.runtime.agent import Agent

    with tempfile.TemporaryDirectory() as root:
        doc = {
            "agent": {"id": "bench", "data_dir": f"{root}/data", "state_dir": f"{root}/state", "log_level": "warning",
                      "http": {"enabled": False}},
            "buffer": {"kind": buffer},
            "connectors": [section(port, signals, concurrency)],
        }
        agent = Agent(load_config_text(yaml.safe_dump(doc), fname="bench.yaml"))
        task = asyncio.create_task(agent.run())
        await agent.started.wait()
        await asyncio.sleep(0.5)  # connected and polling
        unit = agent.running[0].unit
        r0, t0, c0 = unit.requests, time.perf_counter(), time.process_time()
        await asyncio.sleep(secs)
        r1, t1, c1 = unit.requests, time.perf_counter(), time.process_time()
        agent.request_stop()
        res = await task
        # the rate is taken while polling; what the pipeline had not committed by then is
        # committed at stop, so the stop time shows whether the sink kept up
        stop_secs = time.perf_counter() - t1
        assert res.dropped == 0 and res.committed == res.received, res
        return r1 - r0, t1 - t0, c1 - c0, res.committed, stop_secs


def _add(acc: list, res) -> list:
    return [a + b for a, b in zip(acc, res)]


async def main_async(args) -> dict:
    from connectors.modbus.connector import plan_device
    from edge_agent.config import load_config_text

    signals = register_map(args.signals)
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(signals, child), daemon=True)
    proc.start()
    conc = args.concurrency
    try:
        print("starting device simulator", file=sys.stderr, flush=True)
        port = parent.recv()

        def cfg_for(c: int):
            return load_config_text(yaml.safe_dump({"connectors": [section(port, signals, c)]}), fname="bench.yaml").connectors[0]

        cfg = cfg_for(1)
        plan = plan_device(cfg, cfg.devices[0], lambda spec, _n=iter(range(10**9)): next(_n))
        blocks = [p.block for p in plan["default"]]
        per_cycle = words(blocks)
        guard = args.secs * 12 + 60  # a hung phase fails with its name instead of waiting forever
        phase = "warm-up"
        print(f"phase {phase}", file=sys.stderr, flush=True)
        async with asyncio.timeout(guard):
            await bare_loop(port, blocks, 0.3)
        # bare loops and connectors alternate in short slices so all see the same machine load
        bare, bare_n, wire = [0, 0.0, 0.0], [0, 0.0, 0.0], [0, 0.0, 0.0]
        conn = {1: [0, 0.0, 0.0], conc: [0, 0.0, 0.0]}
        rows = {}
        phase = "connector vs bare"
        print(f"phase {phase}", file=sys.stderr, flush=True)
        async with asyncio.timeout(guard), ConnectorLoop(cfg) as seq, ConnectorLoop(cfg_for(conc)) as par:
            for _ in range(max(2, int(args.secs / 0.5))):
                bare = _add(bare, await bare_loop(port, blocks, 0.5))
                wire = _add(wire, await wire_loop(port, blocks, 0.5))
                conn[1] = _add(conn[1], await seq.run(0.5))
                if conc > 1:
                    bare_n = _add(bare_n, await bare_loop(port, blocks, 0.5, conc))
                    conn[conc] = _add(conn[conc], await par.run(0.5))
            rows = {1: seq.rows, conc: par.rows}
        agent = {}
        around = [0, 0.0, 0.0]
        for c in sorted({1, conc}):
            phase = f"agent, max_concurrent_requests {c}"
            print(f"phase {phase}", file=sys.stderr, flush=True)
            async with asyncio.timeout(guard):
                around = _add(around, await bare_loop(port, blocks, 1.0))
                agent[c] = await agent_run(port, signals, args.secs, args.buffer, c)
        async with asyncio.timeout(guard):
            around = _add(around, await bare_loop(port, blocks, 1.0))

        def rate(r) -> float:
            return r[0] * per_cycle / r[1]

        def cpu_rate(r) -> float:
            return r[0] * per_cycle / r[2]

        bare_rate, bare_cpu_rate, around_rate = rate(bare), cpu_rate(bare), rate(around)
        out = {
            "signals": len(signals),
            "requests_per_cycle": len(blocks),
            "requests_per_cycle_one_per_signal": len(signals),
            "registers_per_cycle": per_cycle,
            "bare_pymodbus": {"registers_per_sec": round(bare_rate), "requests_per_sec": round(bare[0] * len(blocks) / bare[1]),
                              "registers_per_cpu_sec": round(bare_cpu_rate)},
        }
        out["connector_client_alone"] = {
            "registers_per_sec": round(rate(wire)), "ratio_vs_bare": round(rate(wire) / bare_rate, 3),
            "registers_per_cpu_sec": round(cpu_rate(wire)),
        }
        if conc > 1:
            out[f"bare_pymodbus_{conc}_connections"] = {
                "registers_per_sec": round(rate(bare_n)), "ratio_vs_bare": round(rate(bare_n) / bare_rate, 3),
                "registers_per_cpu_sec": round(cpu_rate(bare_n)),
            }
        for c in sorted({1, conc}):
            out[f"connector_max_concurrent_requests_{c}"] = {
                "registers_per_sec": round(rate(conn[c])), "cycles": conn[c][0], "rows": rows[c],
                "ratio_vs_bare": round(rate(conn[c]) / bare_rate, 3),
                "cpu_ratio_vs_bare": round(cpu_rate(conn[c]) / bare_cpu_rate, 3),
            }
        for c in sorted({1, conc}):
            req, t, cpu, committed, stop_secs = agent[c]
            cycles = req / len(blocks)
            out[f"agent_max_concurrent_requests_{c}"] = {
                "registers_per_sec": round(cycles * per_cycle / t), "buffer": args.buffer, "committed_rows": committed,
                "ratio_vs_bare": round(cycles * per_cycle / t / around_rate, 3),
                "cpu_ratio_vs_bare": round(cycles * per_cycle / cpu / bare_cpu_rate, 3),
                "cpu_us_per_register": round(cpu / (cycles * per_cycle) * 1e6, 2),
                "stop_secs": round(stop_secs, 2),  # drain + commit of what was still in flight
            }
        out["bare_registers_per_sec_around_the_agent_runs"] = round(around_rate)
        out["cpu_us_per_register"] = {  # this process, wall-clock independent
            "bare_pymodbus": round(1e6 / bare_cpu_rate, 2),
            "connector_client_alone": round(1e6 / cpu_rate(wire), 2),
            "connector": round(1e6 / cpu_rate(conn[1]), 2),
            "agent": round(agent[1][2] / (agent[1][0] / len(blocks) * per_cycle) * 1e6, 2),
        }
        out["target_ratio"] = 0.8
        out["load_average_1min"] = round(os.getloadavg()[0], 2)
        out["cpus"] = os.cpu_count()
        return out
    except TimeoutError:
        raise SystemExit(f"bench/modbus.py: phase {phase!r} did not finish within {guard:.0f} s") from None
    finally:
        proc.terminate()
        proc.join()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--secs", type=float, default=3.0, help="seconds per measured phase")
    p.add_argument("--signals", type=int, default=1000)
    p.add_argument("--buffer", choices=("sqlite", "memory"), default="sqlite", help="agent buffer kind")
    p.add_argument("--concurrency", type=int, default=3,
                   help="max_concurrent_requests of the second connector / agent run (the first is 1, like the bare loop)")
    args = p.parse_args()

    async def run() -> None:
        print(json.dumps(await main_async(args), indent=2), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
