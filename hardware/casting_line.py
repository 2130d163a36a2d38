"""Simulated casting line PLC: an automatic pouring machine and mould line served over Modbus.

The process (advanced every ``tick_secs`` of wall time by ``tick_secs * speed`` of process time):
a mould indexes in (``machine_state`` 1), the stopper opens and melt flows until the mould holds
its pour weight (2), the stopper closes and the cycle counter counts; the mould surface heats up
under the pour and cools while the next one indexes. The melt cools slowly in the ladle; when the
ladle runs low it is refilled from the holding furnace (3) with fresh, hotter melt.

Fault injection, on a schedule (``--faults FILE`` YAML list) or by command (:meth:`inject`, or a
JSON line on the control port): ``thermocouple_drift``, ``stopper_sticking``,
``melt_temperature_drop``, ``sensor_stuck``, ``device_restart``, ``slow_responses``,
``garbage_frames``. Each fault becomes a ground-truth label line (JSON: kind, start, end,
affected signals, params) in ``--labels FILE`` when it ends.

The register map is ``casting_line_map.yaml`` (shared with ``examples/casting-line.yaml``).
This module imports nothing of the agent: it behaves like an independent device.

Run: ``python -m hardware.casting_line --port 0`` (prints ``{"port": N, ...}``) or
``axedge sim casting-line``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hardware._modbus_server import ModbusDeviceServer, RegisterImage, encode

MAP_PATH = Path(__file__).with_name("casting_line_map.yaml")

IDLE, WAITING_MOULD, POURING, REFILL, FAULT = 0, 1, 2, 3, 4
POUR_KG = 25.0  # melt per mould
LADLE_FULL_KG = 1500.0
LADLE_LOW_KG = 100.0
POUR_TEMP_MIN = 1360.0  # below this the alarm bit is set
SENSOR_FAULTS = ("thermocouple_drift", "stopper_sticking", "melt_temperature_drop", "sensor_stuck")
LINK_FAULTS = ("device_restart", "slow_responses", "garbage_frames")
FAULT_KINDS = SENSOR_FAULTS + LINK_FAULTS


def load_map(path: Path = MAP_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass
class CastingLineModel:
    """The process. ``readings()`` gives what the sensors report (faults applied)."""

    rng: random.Random
    melt: float = 1430.0
    ladle_kg: float = LADLE_FULL_KG
    rate: float = 0.0
    stopper: float = 0.0  # % open
    mould_temp: float = 25.0
    cycles: int = 0
    state: int = WAITING_MOULD
    phase_secs: float = 0.0
    poured_kg: float = 0.0
    energy_kwh: float = 0.0
    pour_ms: int = 0
    tilt: float = 0.0
    water: float = 24.0
    mould_no: int = 1
    # fault effects
    tc_drift: float = 0.0  # accumulated thermocouple error, Cel
    tc_drift_rate: float = 0.0  # Cel/s while a drift fault is active
    melt_drop_rate: float = 0.0  # extra melt cooling, Cel/s
    stopper_sticky: bool = False
    stuck: dict[str, float] = field(default_factory=dict)

    def step(self, dt: float) -> None:
        self.phase_secs += dt
        self.melt -= (0.15 + self.melt_drop_rate) * dt  # ladle heat loss
        self.tc_drift += self.tc_drift_rate * dt
        self.energy_kwh += 180.0 * dt / 3600.0  # holding furnace ~180 kW
        self.water += (24.0 + 0.004 * (self.melt - 1300.0) - self.water) * min(1.0, dt / 30.0)
        target = 0.0
        if self.state == WAITING_MOULD:
            if self.phase_secs >= 4.0:
                self.state, self.phase_secs, self.poured_kg = POURING, 0.0, 0.0
                self.mould_temp = 25.0 + self.rng.uniform(-2, 2)
        elif self.state == POURING:
            target = 70.0
            flow = 0.12 * self.stopper  # kg/s at the current opening
            self.rate = flow
            dm = min(flow * dt, POUR_KG - self.poured_kg, self.ladle_kg)
            self.poured_kg += dm
            self.ladle_kg -= dm
            self.pour_ms += int(dt * 1000)
            self.mould_temp += (260.0 - self.mould_temp) * min(1.0, dt / 2.0) * (flow > 0)
            if self.poured_kg >= POUR_KG - 1e-9:
                self.state, self.phase_secs = WAITING_MOULD, 0.0
                self.cycles += 1
                self.mould_no += 1
                if self.ladle_kg < LADLE_LOW_KG:
                    self.state = REFILL
        elif self.state == REFILL:
            self.tilt = min(45.0, self.tilt + 15.0 * dt)
            if self.phase_secs >= 10.0:
                self.ladle_kg = LADLE_FULL_KG
                self.melt = 1440.0 + self.rng.uniform(-5, 5)
                self.state, self.phase_secs, self.tilt = WAITING_MOULD, 0.0, 0.0
        if self.state != POURING:
            self.rate = 0.0
            self.mould_temp += (25.0 - self.mould_temp) * min(1.0, dt / 60.0)
        # stopper follows its set point at 40 %/s, 2 %/s when sticking
        speed = 2.0 if self.stopper_sticky else 40.0
        self.stopper += max(-speed * dt, min(speed * dt, target - self.stopper))

    def readings(self) -> dict[str, Any]:
        noise = self.rng.gauss(0.0, 0.3)
        alarm_stopper = self.state == POURING and self.phase_secs > 3.0 and abs(self.stopper - 70.0) > 10.0
        r = {
            "melt_temperature": self.melt + self.tc_drift + noise,
            "ladle_weight": self.ladle_kg,
            "pouring_rate": self.rate,
            "stopper_position": self.stopper,
            "mould_temperature": self.mould_temp,
            "cycle_counter": self.cycles,
            "machine_state": self.state,
            "alarm_melt_temperature_low": self.melt < POUR_TEMP_MIN,
            "alarm_stopper": alarm_stopper,
            "alarm_ladle_low": self.ladle_kg < LADLE_LOW_KG,
            "mould_code": f"M{self.mould_no % 10000:04d}P7",
            "furnace_energy": self.energy_kwh,
            "recipe_number": 4711,
            "pour_time_total": self.pour_ms,
            "ladle_tilt": self.tilt,
            "cooling_water_temperature": self.water,
            "pour_enable": self.state in (WAITING_MOULD, POURING),
            "refill_request": self.ladle_kg < LADLE_LOW_KG,
            "mould_in_position": self.state == POURING,
            "ladle_at_station": self.state != REFILL,
        }
        r.update(self.stuck)
        return r


@dataclass
class Fault:
    kind: str
    duration_secs: float
    params: dict[str, Any]
    signals: list[str]
    source: str
    start_ns: int = 0
    end_ns: int = 0


class CastingLineSim:
    """The simulator, usable in-process: ``async with CastingLineSim(port=0) as sim: sim.port``.

    ``tick_secs=None`` freezes the process: values change only through :meth:`step` (scripted
    tests compare exactly against :attr:`served`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        labels: str | Path | None = None,
        faults: list[dict[str, Any]] | None = None,
        seed: int = 0,
        speed: float = 1.0,
        tick_secs: float | None = 0.1,
        transport: str = "tcp",
        serial_port: str | None = None,
        map_path: Path = MAP_PATH,
    ) -> None:
        self.map = load_map(map_path)
        self.signals = self.map["signals"]
        self.unit_id = int(self.map.get("unit_id", 1))
        self.labels_path = Path(labels) if labels else None
        self.schedule = [dict(f) for f in (faults or [])]
        for f in self.schedule:
            _check_fault(f.get("kind"), f.get("params") or {}, self.signals)
        self.speed = speed
        self.tick_secs = tick_secs
        self.model = CastingLineModel(random.Random(seed))
        self.image = RegisterImage(self._ranges())
        self.server = ModbusDeviceServer(
            {self.unit_id: self.image}, host=host, port=port, transport=transport, serial_port=serial_port, seed=seed
        )
        #: engineering values as served (after the register encoding: float32 rounding, scaling)
        self.served: dict[str, Any] = {}
        self.labels: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task] = []
        self._active: list[Fault] = []
        self._control = None
        self.control_port: int | None = None
        self._write()

    # -- registers -----------------------------------------------------------------------------
    def _ranges(self) -> dict[str, list[tuple[int, int]]]:
        base = 1 if self.map.get("addressing") == "one_based" else 0
        out: dict[str, list[tuple[int, int]]] = {}
        for s in self.signals:
            width = 1 if s.get("table") in ("coil", "discrete_input") else _width(s)
            out.setdefault(s.get("table", "holding"), []).append((s["address"] - base, width))
        return out

    def _write(self) -> None:
        """Encode the current readings into the register image."""
        base = 1 if self.map.get("addressing") == "one_based" else 0
        order = self.map.get("byte_order", "ABCD")
        values = self.model.readings()
        bits_words: dict[int, int] = {}
        for s in self.signals:
            name, table, addr = s["name"], s.get("table", "holding"), s["address"] - base
            v = values[name]
            t = s.get("type") or ("bool" if table in ("coil", "discrete_input") else "uint16")
            if t == "bool":
                self.image.set_bits(table, addr, [bool(v)])
                self.served[name] = bool(v)
            elif t == "bit":
                w = bits_words.get(addr, 0)
                bits_words[addr] = w | (int(bool(v)) << s["bit"])
                self.served[name] = bool(v)
            elif t == "string":
                self.image.set_words(table, addr, encode(v, "string", s.get("byte_order", order), s["count"]))
                self.served[name] = str(v)[: 2 * s["count"]]
            else:
                scale, offset = s.get("scale", 1.0), s.get("offset", 0.0)
                raw = (v - offset) / scale
                if t in ("float32", "float64"):
                    raw = float(np.float32(raw)) if t == "float32" else float(raw)
                else:
                    raw = int(round(raw))
                self.image.set_words(table, addr, encode(raw, t, s.get("byte_order", order), s.get("count")))
                self.served[name] = raw * scale + offset if (scale, offset) != (1.0, 0.0) else raw
        for addr, w in bits_words.items():
            self.image.set_words("holding", addr, [w])

    def step(self, dt: float) -> None:
        """Advance the process by ``dt`` seconds of process time and update the registers."""
        self.model.step(dt)
        self._write()

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.port

    async def start(self, control_port: int | None = None) -> None:
        await self.server.start()
        if self.tick_secs:
            self._tasks.append(asyncio.create_task(self._tick()))
        for f in self.schedule:
            self._tasks.append(asyncio.create_task(self._scheduled(f)))
        if control_port is not None:
            self._control = await asyncio.start_server(self._handle_control, self.server.host, control_port)
            self.control_port = self._control.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for f in list(self._active):  # faults cut short by the stop still become labels
            self._end(f)
        if self._control is not None:
            self._control.close()
            await self._control.wait_closed()
            self._control = None
        await self.server.stop()

    async def __aenter__(self) -> CastingLineSim:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_secs)
            self.step(self.tick_secs * self.speed)

    # -- faults --------------------------------------------------------------------------------
    def inject(self, kind: str, duration_secs: float, **params: Any) -> asyncio.Task:
        """Start a fault now; it ends (and is labelled) after ``duration_secs`` of wall time."""
        _check_fault(kind, params, self.signals)
        return asyncio.create_task(self._run_fault(kind, duration_secs, params, "command"))

    async def _scheduled(self, f: dict[str, Any]) -> None:
        await asyncio.sleep(float(f.get("start_secs", 0.0)))
        await self._run_fault(f["kind"], float(f.get("duration_secs", 10.0)), dict(f.get("params") or {}), "schedule")

    async def _run_fault(self, kind: str, duration: float, params: dict[str, Any], source: str) -> None:
        fault = Fault(kind, duration, params, self._affected(kind, params), source, start_ns=time.time_ns())
        self._active.append(fault)
        m = self.model
        try:
            if kind == "device_restart":
                await self.server.restart(down_secs=duration)
                return
            if kind == "thermocouple_drift":
                m.tc_drift_rate = float(params.get("rate_per_sec", 0.5))
            elif kind == "stopper_sticking":
                m.stopper_sticky = True
            elif kind == "melt_temperature_drop":
                m.melt_drop_rate = float(params.get("rate_per_sec", 3.0))
            elif kind == "sensor_stuck":
                name = params.get("signal", "mould_temperature")
                m.stuck[name] = m.readings()[name]
            elif kind == "slow_responses":
                self.server.response_delay_secs = float(params.get("delay_secs", 2.0))
            elif kind == "garbage_frames":
                self.server.garbage = True
            await asyncio.sleep(duration)
        finally:
            if kind == "thermocouple_drift":
                m.tc_drift_rate = m.tc_drift = 0.0
            elif kind == "stopper_sticking":
                m.stopper_sticky = False
            elif kind == "melt_temperature_drop":
                m.melt_drop_rate = 0.0
            elif kind == "sensor_stuck":
                m.stuck.pop(params.get("signal", "mould_temperature"), None)
            elif kind == "slow_responses":
                self.server.response_delay_secs = 0.0
            elif kind == "garbage_frames":
                self.server.garbage = False
            if fault in self._active:
                self._end(fault)

    def _affected(self, kind: str, params: dict[str, Any]) -> list[str]:
        if kind in LINK_FAULTS:
            return [s["name"] for s in self.signals]
        return {
            "thermocouple_drift": ["melt_temperature"],
            "stopper_sticking": ["stopper_position", "pouring_rate", "alarm_stopper"],
            "melt_temperature_drop": ["melt_temperature", "alarm_melt_temperature_low"],
            "sensor_stuck": [params.get("signal", "mould_temperature")],
        }[kind]

    def _end(self, fault: Fault) -> None:
        fault.end_ns = time.time_ns()
        self._active.remove(fault)
        label = {
            "kind": fault.kind,
            "start": _iso(fault.start_ns),
            "end": _iso(fault.end_ns),
            "start_ns": fault.start_ns,
            "end_ns": fault.end_ns,
            "signals": fault.signals,
            "device": "casting-line",
            "unit_id": self.unit_id,
            "params": fault.params,
            "source": fault.source,
        }
        self.labels.append(label)
        if self.labels_path is not None:
            self.labels_path.parent.mkdir(parents=True, exist_ok=True)
            with self.labels_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(label, sort_keys=True) + "\n")

    async def _handle_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """JSON lines: ``{"inject": "slow_responses", "duration_secs": 5, "params": {...}}``."""
        try:
            while line := await reader.readline():
                try:
                    cmd = json.loads(line)
                    self.inject(cmd["inject"], float(cmd.get("duration_secs", 10.0)), **(cmd.get("params") or {}))
                    reply = {"ok": True}
                except (ValueError, KeyError, TypeError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        finally:
            writer.close()


def _width(s: dict[str, Any]) -> int:
    t = s.get("type") or "uint16"
    return {"int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}.get(t, s.get("count") or 1)


def _check_fault(kind: Any, params: dict[str, Any], signals: list[dict[str, Any]]) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    if kind == "sensor_stuck" and params.get("signal", "mould_temperature") not in {s["name"] for s in signals}:
        raise ValueError(f"sensor_stuck: unknown signal {params.get('signal')!r}")


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="microseconds")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="axedge sim casting-line", description="Simulated casting line PLC (Modbus TCP server)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5020, help="Modbus TCP port; 0 picks a free port (printed as JSON)")
    p.add_argument("--transport", choices=("tcp", "rtu_over_tcp"), default="tcp", help="MBAP (tcp) or RTU frames over TCP")
    p.add_argument("--labels", help="append ground-truth fault labels (JSON lines) to this file")
    p.add_argument("--faults", help="YAML list of scheduled faults: {kind, start_secs, duration_secs, params}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=float, default=1.0, help="process time acceleration (fault schedule stays in wall time)")
    p.add_argument("--control-port", type=int, default=None, help="JSON-lines command port for fault injection (0 = free)")
    p.add_argument("--duration-secs", type=float, default=None, help="stop after this many seconds (default: until SIGINT/SIGTERM)")
    args = p.parse_args(argv)
    faults = []
    if args.faults:
        faults = yaml.safe_load(Path(args.faults).read_text(encoding="utf-8")) or []
        if not isinstance(faults, list):
            p.error("--faults must hold a YAML list")
    try:
        asyncio.run(_serve(args, faults))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(args: argparse.Namespace, faults: list[dict[str, Any]]) -> None:
    sim = CastingLineSim(
        args.host, args.port, labels=args.labels, faults=faults, seed=args.seed, speed=args.speed, transport=args.transport
    )
    await sim.start(control_port=args.control_port)
    info = {"port": sim.port, "host": args.host, "unit_id": sim.unit_id, "transport": args.transport}
    if sim.control_port is not None:
        info["control_port"] = sim.control_port
    print(json.dumps(info), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if args.duration_secs is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration_secs)
        else:
            await stop.wait()
    finally:
        await sim.stop()


if __name__ == "__main__":
    sys.exit(main())
