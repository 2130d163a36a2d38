"""Simulated CNC machine tool: an asyncua OPC UA server shaped after umati (OPC 40501 MachineTool
on OPC 40001 Machinery and OPC 10000-100 DI).

Independent of the agent (imports nothing from axedge). Address space::

    Objects/Machines (Machinery)
      <machine> : MachineToolType (MachineTool ns)
        Identification (DI):  Manufacturer, Model, SerialNumber, YearOfConstruction, SoftwareRevision
        Monitoring (MT)
          MachineTool:  PowerOnDuration [h], OperationMode
          Channel1:     ChannelState (enum), FeedOverride [%]
          Spindle:      ActualSpeed [/min], Override [%], IsRotating, Load [%], VibrationRMS [mm/s]
          AxisX/Y/Z:    ActualPosition [mm], Load [%]
          Coolant:      Temperature [Cel], Flow [L/min]
          Stacklight:   Lamp0/SignalColor, Lamp0/SignalOn
        Production (MT)
          ActiveProgram: Name, State, NumberInList
          ProductionPlan/Job1: Identifier, RunsPlanned, RunsCompleted
          PartCounter
        Notification (MT)
          Messages: LastMessage, Severity
      Bulk/Group<g>/Node<k> (optional, NodeId s=Bulk.Node<k>, for scale tests and benchmarks)

Instance nodes use string NodeIds in the simulator's namespace (``urn:axedge:sim:machine-tool``),
analog values carry EngineeringUnits (EUInformation, UNECE codes) and EURange properties.

Machining cycles run a program that makes a part every ``cycle_secs``. Faults (tool wear,
spindle bearing fault, coolant failure, vibration sensor failure, server restart, slow server)
are injected from a schedule or by the async API, and each is logged as a ground-truth label
(one JSON object per line: kind, start/end, asset, affected signals).

CLI (wired as ``axedge sim machine-tool``)::

    python -m hardware.machine_tool --port 0 --labels labels.jsonl --faults faults.json
    -> {"port": 48123, "endpoint": "opc.tcp://127.0.0.1:48123", ...} on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.crypto import uacrypto
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID

NS_DI = "http://opcfoundation.org/UA/DI/"
NS_MACHINERY = "http://opcfoundation.org/UA/Machinery/"
NS_MT = "http://opcfoundation.org/UA/MachineTool/"
NS_SIM = "urn:axedge:sim:machine-tool"

FAULT_KINDS = ("tool_wear", "bearing_fault", "coolant_failure", "sensor_failure", "server_restart", "slow_server")

SECURITY_CHOICES = {
    "none": [ua.SecurityPolicyType.NoSecurity],
    "sign": [
        ua.SecurityPolicyType.Basic256Sha256_Sign,
        ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
        ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ],
    "encrypt": [
        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
        ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
        ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    ],
}

# UNECE common code -> (display name)
_UNITS = {"RPM": "r/min", "P1": "%", "CEL": "°C", "MMT": "mm", "C16": "mm/s", "L2": "l/min", "HUR": "h"}

log = logging.getLogger("axedge.sim.machine_tool")


def _unit_id(code: str) -> int:
    v = 0
    for c in code:
        v = (v << 8) | ord(c)
    return v


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Fault:
    kind: str
    at_secs: float = 0.0
    duration_secs: float = 30.0
    severity: float = 1.0


@dataclass
class _Active:
    kind: str
    start: float
    end: float
    severity: float
    label: dict[str, Any] = field(default_factory=dict)


# Signals each fault kind affects (names relative to the machine, as in the labels)
AFFECTED = {
    "tool_wear": ["Monitoring/Spindle/Load", "Monitoring/Spindle/VibrationRMS"],
    "bearing_fault": ["Monitoring/Spindle/VibrationRMS", "Monitoring/Spindle/Load"],
    "coolant_failure": ["Monitoring/Coolant/Flow", "Monitoring/Coolant/Temperature"],
    "sensor_failure": ["Monitoring/Spindle/VibrationRMS"],
    "server_restart": ["*"],
    "slow_server": ["*"],
}


class MachineToolSim:
    """The simulated machine tool. ``await start()`` / ``await stop()``, or ``async with``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "MachineTool1",
        security: tuple[str, ...] = ("none",),
        cert_dir: Path | None = None,
        users: dict[str, str] | None = None,
        allow_anonymous: bool = True,
        seed: int = 0,
        update_hz: float = 10.0,
        cycle_secs: float = 20.0,
        labels_path: Path | None = None,
        faults: list[Fault] | None = None,
        bulk_nodes: int = 0,
        bulk_hz: float = 1.0,
        namespace_offset: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.name = name
        self.security = tuple(security)
        self.cert_dir = Path(cert_dir) if cert_dir else Path(tempfile.mkdtemp(prefix="axedge-mt-pki-"))
        self.users = dict(users or {})
        self.allow_anonymous = allow_anonymous
        self.rng = np.random.default_rng(seed)
        self.update_hz = update_hz
        self.cycle_secs = cycle_secs
        self.labels_path = Path(labels_path) if labels_path else None
        self.schedule = sorted(faults or [], key=lambda f: f.at_secs)
        self.bulk_nodes = bulk_nodes
        self.bulk_hz = bulk_hz
        self.namespace_offset = namespace_offset
        self.server: Server | None = None
        self.labels: list[dict[str, Any]] = []
        self.restarts = 0
        self.slow_secs = 0.0
        self._active: list[_Active] = []
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self._nodes: dict[str, ua.NodeId] = {}
        self._bulk_ids: list[ua.NodeId] = []
        self._state = {"parts": 0, "power_on_h": 1234.5, "wear": 0.0, "job_runs": 0}
        self.cert_path = self.cert_dir / "server_cert.der"
        self.key_path = self.cert_dir / "server_key.pem"
        self.fingerprint: str | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    async def __aenter__(self) -> MachineToolSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the address space, start listening and the simulation loop."""
        if not self.port:
            self.port = free_port(self.host)
        await self._start_server()
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for a in list(self._active):
            self._finish(a, time.time())
        await self._stop_server()

    async def restart(self, down_secs: float = 1.0, *, shift_namespaces: bool = True) -> None:
        """Stop the server (all sessions die), wait, start it again. By default the namespace
        indices shift, as on real servers that load companion specs in a different order."""
        await self._stop_server()
        await asyncio.sleep(down_secs)
        if shift_namespaces:
            self.namespace_offset += 1
        self.restarts += 1
        await self._start_server()

    async def _stop_server(self) -> None:
        srv, self.server = self.server, None
        if srv is not None:
            await srv.stop()

    async def _start_server(self) -> None:
        srv = Server(user_manager=_Users(self.users, self.allow_anonymous))
        await srv.init()
        srv.set_endpoint(self.endpoint)
        srv.set_server_name(f"axedge simulated machine tool {self.name}")
        await srv.set_application_uri("urn:axedge:sim:machine-tool:server")
        policies = [p for s in self.security for p in SECURITY_CHOICES[s]]
        srv.set_security_policy(policies)
        secure = any(s != "none" for s in self.security)
        tokens: list[type] = [ua.UserNameIdentityToken, ua.X509IdentityToken] if secure else [ua.UserNameIdentityToken]
        if self.allow_anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        srv.set_identity_tokens(tokens)
        if secure:
            self.cert_dir.mkdir(parents=True, exist_ok=True)
            await setup_self_signed_certificate(
                self.key_path, self.cert_path, "urn:axedge:sim:machine-tool:server", socket.gethostname(),
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], {"organizationName": "axedge sim"},
            )
            await srv.load_certificate(str(self.cert_path))
            await srv.load_private_key(str(self.key_path))
            import hashlib

            self.fingerprint = hashlib.sha256(uacrypto.der_from_x509(srv.iserver.certificate)).hexdigest()
        for k in range(self.namespace_offset):
            await srv.register_namespace(f"urn:axedge:sim:padding:{k}")
        await self._build(srv)
        srv.subscribe_server_callback(CallbackType.PreRead, self._slow_read)
        await srv.start()
        self.server = srv

    async def _slow_read(self, event: Any, dispatcher: Any) -> None:
        if self.slow_secs > 0:
            await asyncio.sleep(self.slow_secs)

    # --- address space ------------------------------------------------------------------------

    async def _build(self, srv: Server) -> None:
        di = await srv.register_namespace(NS_DI)
        mach = await srv.register_namespace(NS_MACHINERY)
        mt = await srv.register_namespace(NS_MT)
        sim = await srv.register_namespace(NS_SIM)
        self._nodes = {}
        mt_type = await srv.nodes.base_object_type.add_object_type(ua.NodeId(13, mt), ua.QualifiedName("MachineToolType", mt))
        machines = await srv.nodes.objects.add_folder(ua.NodeId("Machines", sim), ua.QualifiedName("Machines", mach))
        m = await machines.add_object(ua.NodeId(self.name, sim), ua.QualifiedName(self.name, sim), objecttype=mt_type.nodeid)
        p = self.name

        async def obj(parent, path: str, bname_ns: int, bname: str):
            return await parent.add_object(ua.NodeId(f"{p}.{path}", sim), ua.QualifiedName(bname, bname_ns))

        async def var(parent, path: str, bname_ns: int, bname: str, value: Any, vtype: ua.VariantType,
                      unit: str | None = None, rng: tuple[float, float] | None = None, datatype: ua.NodeId | None = None):
            nid = ua.NodeId(f"{p}.{path}", sim)
            v = await parent.add_variable(nid, ua.QualifiedName(bname, bname_ns), ua.Variant(value, vtype), datatype=datatype)
            if unit:
                eu = ua.EUInformation(NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact", UnitId=_unit_id(unit),
                                      DisplayName=ua.LocalizedText(_UNITS[unit]), Description=ua.LocalizedText(_UNITS[unit]))
                await v.add_property(ua.NodeId(f"{p}.{path}.EngineeringUnits", sim), ua.QualifiedName("EngineeringUnits", 0),
                                     ua.Variant(eu, ua.VariantType.ExtensionObject), datatype=ua.NodeId(ua.ObjectIds.EUInformation))
            if rng:
                await v.add_property(ua.NodeId(f"{p}.{path}.EURange", sim), ua.QualifiedName("EURange", 0),
                                     ua.Variant(ua.Range(Low=rng[0], High=rng[1]), ua.VariantType.ExtensionObject),
                                     datatype=ua.NodeId(ua.ObjectIds.Range))
            self._nodes[path] = nid
            return v

        D, S = ua.VariantType.Double, ua.VariantType.String
        ident = await obj(m, "Identification", di, "Identification")
        for name, val in (("Manufacturer", "axedge Werkzeugmaschinen"), ("Model", "VMC-850 (simulated)"),
                          ("SerialNumber", "SIM-0001"), ("SoftwareRevision", "1.4.2")):
            await var(ident, f"Identification/{name}", mach if name != "SoftwareRevision" else di, name,
                      ua.LocalizedText(val) if name in ("Manufacturer", "Model") else val,
                      ua.VariantType.LocalizedText if name in ("Manufacturer", "Model") else S)
        await var(ident, "Identification/YearOfConstruction", mach, "YearOfConstruction", 2021, ua.VariantType.UInt16)

        mon = await obj(m, "Monitoring", mt, "Monitoring")
        mtm = await obj(mon, "Monitoring/MachineTool", sim, "MachineTool")
        await var(mtm, "Monitoring/MachineTool/PowerOnDuration", mt, "PowerOnDuration", self._state["power_on_h"], D, "HUR")
        await var(mtm, "Monitoring/MachineTool/OperationMode", mt, "OperationMode", 2, ua.VariantType.Int32,
                  datatype=ua.NodeId(ua.ObjectIds.Enumeration))
        ch = await obj(mon, "Monitoring/Channel1", sim, "Channel1")
        await var(ch, "Monitoring/Channel1/ChannelState", mt, "ChannelState", 0, ua.VariantType.Int32,
                  datatype=ua.NodeId(ua.ObjectIds.Enumeration))
        await var(ch, "Monitoring/Channel1/FeedOverride", mt, "FeedOverride", 100.0, D, "P1", (0.0, 120.0))
        sp = await obj(mon, "Monitoring/Spindle", sim, "Spindle")
        await var(sp, "Monitoring/Spindle/ActualSpeed", sim, "ActualSpeed", 0.0, D, "RPM", (0.0, 12000.0))
        await var(sp, "Monitoring/Spindle/Override", mt, "Override", 100.0, D, "P1", (50.0, 120.0))
        await var(sp, "Monitoring/Spindle/IsRotating", mt, "IsRotating", False, ua.VariantType.Boolean)
        await var(sp, "Monitoring/Spindle/Load", sim, "Load", 0.0, D, "P1", (0.0, 150.0))
        await var(sp, "Monitoring/Spindle/VibrationRMS", sim, "VibrationRMS", 0.3, D, "C16", (0.0, 20.0))
        for ax in "XYZ":
            a = await obj(mon, f"Monitoring/Axis{ax}", sim, f"Axis{ax}")
            await var(a, f"Monitoring/Axis{ax}/ActualPosition", sim, "ActualPosition", 0.0, D, "MMT", (-500.0, 500.0))
            await var(a, f"Monitoring/Axis{ax}/Load", sim, "Load", 0.0, D, "P1", (0.0, 150.0))
        co = await obj(mon, "Monitoring/Coolant", sim, "Coolant")
        await var(co, "Monitoring/Coolant/Temperature", sim, "Temperature", 21.0, D, "CEL", (0.0, 80.0))
        await var(co, "Monitoring/Coolant/Flow", sim, "Flow", 12.0, D, "L2", (0.0, 40.0))
        st = await obj(mon, "Monitoring/Stacklight", mt, "Stacklight")
        lamp = await obj(st, "Monitoring/Stacklight/Lamp0", sim, "Lamp0")
        await var(lamp, "Monitoring/Stacklight/Lamp0/SignalColor", mt, "SignalColor", 2, ua.VariantType.Int32,
                  datatype=ua.NodeId(ua.ObjectIds.Enumeration))
        await var(lamp, "Monitoring/Stacklight/Lamp0/SignalOn", mt, "SignalOn", True, ua.VariantType.Boolean)

        prod = await obj(m, "Production", mt, "Production")
        ap = await obj(prod, "Production/ActiveProgram", mt, "ActiveProgram")
        await var(ap, "Production/ActiveProgram/Name", mt, "Name", "O1001_BRACKET", S)
        await var(ap, "Production/ActiveProgram/State", mt, "State", ua.LocalizedText("Initializing"), ua.VariantType.LocalizedText)
        await var(ap, "Production/ActiveProgram/NumberInList", mt, "NumberInList", 0, ua.VariantType.UInt16)
        plan = await obj(prod, "Production/ProductionPlan", mt, "ProductionPlan")
        job = await obj(plan, "Production/ProductionPlan/Job1", sim, "Job1")
        await var(job, "Production/ProductionPlan/Job1/Identifier", mt, "Identifier", "JOB-4711", S)
        await var(job, "Production/ProductionPlan/Job1/RunsPlanned", mt, "RunsPlanned", 500, ua.VariantType.UInt32)
        await var(job, "Production/ProductionPlan/Job1/RunsCompleted", mt, "RunsCompleted", self._state["job_runs"], ua.VariantType.UInt32)
        await var(prod, "Production/PartCounter", sim, "PartCounter", self._state["parts"], ua.VariantType.UInt32)

        notif = await obj(m, "Notification", mt, "Notification")
        msgs = await obj(notif, "Notification/Messages", mt, "Messages")
        await var(msgs, "Notification/Messages/LastMessage", sim, "LastMessage", "", S)
        await var(msgs, "Notification/Messages/Severity", sim, "Severity", 0, ua.VariantType.UInt16)

        self._bulk_ids = []
        if self.bulk_nodes:
            bulk = await srv.nodes.objects.add_folder(ua.NodeId("Bulk", sim), ua.QualifiedName("Bulk", sim))
            group = bulk
            for k in range(self.bulk_nodes):
                if k % 100 == 0:  # asyncua adds children in O(siblings): keep folders small
                    group = await bulk.add_folder(ua.NodeId(f"Bulk.Group{k // 100}", sim), ua.QualifiedName(f"Group{k // 100}", sim))
                nid = ua.NodeId(f"Bulk.Node{k}", sim)
                await group.add_variable(nid, ua.QualifiedName(f"Node{k}", sim), ua.Variant(0.0, D))
                self._bulk_ids.append(nid)

    # --- faults and labels --------------------------------------------------------------------

    def inject(self, kind: str, duration_secs: float = 30.0, severity: float = 1.0, *, source: str = "api") -> dict[str, Any]:
        """Start a fault now; returns its label (completed with ``end`` when it ends). Labels use
        the casting line's fields: kind, start/end (ISO and ns), signals, device, params, source."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        now_m, now_ns = time.monotonic(), time.time_ns()
        label = {
            "kind": kind,
            "start": _iso(now_ns / 1e9),
            "end": None,
            "start_ns": now_ns,
            "end_ns": None,
            "signals": AFFECTED[kind],
            "device": self.name,
            "asset": self.name,
            "severity": severity,
            "params": {"severity": severity, "duration_secs": duration_secs},
            "source": source,
        }
        a = _Active(kind, now_m, now_m + duration_secs, severity, label)
        self._active.append(a)
        if kind == "server_restart":
            asyncio.get_running_loop().create_task(self._restart_fault(a, duration_secs))
        elif kind == "slow_server":
            self.slow_secs = 0.5 * severity
        return label

    async def _restart_fault(self, a: _Active, down_secs: float) -> None:
        await self.restart(down_secs)
        a.end = time.monotonic()

    def _finish(self, a: _Active, now: float) -> None:
        self._active.remove(a)
        a.label["end"] = _iso(now)
        a.label["end_ns"] = int(now * 1e9)
        if a.kind == "slow_server":
            self.slow_secs = 0.0
        if a.kind == "tool_wear":
            self._state["wear"] = 0.0  # tool changed
        self.labels.append(a.label)
        if self.labels_path is not None:
            with self.labels_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(a.label, sort_keys=True) + "\n")

    def _level(self, kind: str, now: float) -> float:
        """0..severity ramp of an active fault (tool wear grows gradually, others step)."""
        lvl = 0.0
        for a in self._active:
            if a.kind == kind:
                frac = 1.0 if kind != "tool_wear" else min(1.0, (now - a.start) / max(1e-6, a.end - a.start))
                lvl = max(lvl, a.severity * frac)
        return lvl

    # --- simulation ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        period = 1.0 / self.update_hz
        next_t = time.monotonic()
        bulk = asyncio.create_task(self._bulk_loop()) if self.bulk_nodes else None
        try:
            while True:
                await self._tick()
                next_t = max(next_t + period, time.monotonic())  # an overrun skips ticks, no burst
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))
        finally:
            if bulk is not None:
                bulk.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bulk

    async def _bulk_loop(self) -> None:
        """Every bulk node changes ``bulk_hz`` times per second (its own schedule, so the bulk
        rate does not depend on ``update_hz``); an overrunning update skips ticks."""
        period = 1.0 / self.bulk_hz
        next_t, k = time.monotonic(), 0
        while True:
            if self.server is not None:
                k += 1
                await self._update_bulk(k)
            next_t = max(next_t + period, time.monotonic())
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))

    async def _tick(self) -> None:
        now = time.monotonic()
        for f in list(self.schedule):
            if now - self._t0 >= f.at_secs:
                self.schedule.remove(f)
                self.inject(f.kind, f.duration_secs, f.severity, source="schedule")
        for a in list(self._active):
            if now >= a.end:
                self._finish(a, time.time())
        if self.server is not None:
            await self._update(now)

    async def _write(self, path: str, value: Any, vtype: ua.VariantType, status: int = ua.StatusCodes.Good,
                     ts: dt.datetime | None = None) -> None:
        srv = self.server
        if srv is None:
            return
        t = ts or dt.datetime.now(dt.timezone.utc)
        dv = ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status), SourceTimestamp=t, ServerTimestamp=t)
        await srv.write_attribute_value(self._nodes[path], dv)

    async def _update(self, now: float) -> None:
        t = now - self._t0
        rng = self.rng
        D = ua.VariantType.Double
        cyc = t % self.cycle_secs
        phase = cyc / self.cycle_secs
        cutting = 0.1 < phase < 0.85
        if cyc < 1.0 / self.update_hz and t > self.cycle_secs / 2:
            self._state["parts"] += 1
            self._state["job_runs"] += 1
        wear = self._level("tool_wear", now)
        bearing = self._level("bearing_fault", now)
        coolant = self._level("coolant_failure", now)
        sensor = self._level("sensor_failure", now)
        speed = (8000.0 + 150 * math.sin(t)) if cutting else 0.0
        load = (35.0 + 8 * math.sin(2 * math.pi * phase * 3) + 40 * wear) if cutting else 2.0
        vib = (1.1 + 2.5 * wear + 6.0 * bearing) if cutting else (0.3 + 2.0 * bearing)
        vib += abs(rng.normal(0, 0.05 + 0.6 * bearing))
        self._state["power_on_h"] += 1 / self.update_hz / 3600
        ts = dt.datetime.now(dt.timezone.utc)
        w = self._write
        await w("Monitoring/Spindle/ActualSpeed", speed + rng.normal(0, 5) * cutting, D, ts=ts)
        await w("Monitoring/Spindle/IsRotating", cutting, ua.VariantType.Boolean, ts=ts)
        await w("Monitoring/Spindle/Load", max(0.0, load + rng.normal(0, 1.0)), D, ts=ts)
        if sensor > 0:
            await w("Monitoring/Spindle/VibrationRMS", 0.0, D, ua.StatusCodes.BadSensorFailure, ts=ts)
        else:
            await w("Monitoring/Spindle/VibrationRMS", vib, D, ts=ts)
        for k, ax in enumerate("XYZ"):
            pos = 200 * math.sin(2 * math.pi * phase + k) if cutting else 0.0
            await w(f"Monitoring/Axis{ax}/ActualPosition", pos, D, ts=ts)
            await w(f"Monitoring/Axis{ax}/Load", (15 + 5 * math.cos(t + k) + 10 * wear) if cutting else 1.0, D, ts=ts)
        temp_target = 21.0 + (4.0 if cutting else 0.0) + 25.0 * coolant
        cur = float((await self._read("Monitoring/Coolant/Temperature")) or 21.0)
        await w("Monitoring/Coolant/Temperature", cur + (temp_target - cur) * 0.02 + rng.normal(0, 0.02), D, ts=ts)
        await w("Monitoring/Coolant/Flow", max(0.0, 12.0 * (1 - coolant) + rng.normal(0, 0.1)), D, ts=ts)
        await w("Monitoring/Channel1/ChannelState", 0 if cutting else 2, ua.VariantType.Int32, ts=ts)
        await w("Monitoring/MachineTool/PowerOnDuration", self._state["power_on_h"], D, ts=ts)
        state = "Running" if cutting else ("Ended" if phase >= 0.85 else "Initializing")
        await w("Production/ActiveProgram/State", ua.LocalizedText(state), ua.VariantType.LocalizedText, ts=ts)
        await w("Production/PartCounter", self._state["parts"], ua.VariantType.UInt32, ts=ts)
        await w("Production/ProductionPlan/Job1/RunsCompleted", self._state["job_runs"], ua.VariantType.UInt32, ts=ts)
        await w("Monitoring/Stacklight/Lamp0/SignalColor", 1 if (bearing or coolant) else (2 if cutting else 3),
                ua.VariantType.Int32, ts=ts)
        msg = ""
        if coolant:
            msg = "E2031 coolant flow low"
        elif bearing:
            msg = "W1107 spindle vibration high"
        await w("Notification/Messages/LastMessage", msg, ua.VariantType.String, ts=ts)
        await w("Notification/Messages/Severity", 800 if coolant else (500 if bearing else 0), ua.VariantType.UInt16, ts=ts)

    async def _read(self, path: str) -> Any:
        srv = self.server
        return None if srv is None else srv.read_attribute_value(self._nodes[path]).Value.Value

    async def _update_bulk(self, k: int) -> None:
        srv = self.server
        if srv is None:
            return
        ts = dt.datetime.now(dt.timezone.utc)
        for i, nid in enumerate(self._bulk_ids):
            dv = ua.DataValue(ua.Variant(float(k + i), ua.VariantType.Double), SourceTimestamp=ts, ServerTimestamp=ts)
            await srv.write_attribute_value(nid, dv)


class MachineToolThread:
    """The in-process simulator on its own event loop thread: one server shared by many tests
    (``with MachineToolThread(...) as t``), controlled through ``await t.call(fn, *args)``."""

    def __init__(self, **kwargs: Any) -> None:
        import threading

        self.sim = MachineToolSim(**kwargs)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="machine-tool-sim", daemon=True)

    def __enter__(self) -> MachineToolThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(120)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def endpoint(self) -> str:
        return self.sim.endpoint

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args)`` (plain or async) on the simulator's loop and await the result."""

        async def runner() -> Any:
            res = fn(*args, **kwargs)
            return await res if asyncio.iscoroutine(res) else res

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(runner(), self.loop))


class MachineToolProcess:
    """The simulator in its own process (for SIGKILL / restart tests and demos)."""

    def __init__(self, *args: str, port: int = 0, log_path: Path | None = None) -> None:
        self.args = list(args)
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: Any = None
        self.info: dict[str, Any] = {}

    def start(self, *extra: str, timeout: float = 60.0) -> dict[str, Any]:
        err = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hardware.machine_tool", "--port", str(self.port), *self.args, *extra],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=str(Path(__file__).resolve().parents[1]),
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.kill()
            raise RuntimeError(f"machine tool simulator did not start within {timeout} s")
        self.info = json.loads(line)
        return self.info

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: sockets die without a goodbye, as on a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class _Users:
    """Anonymous (if allowed), username/password from the configured map, and any user
    certificate (the simulator trusts every certificate identity)."""

    def __init__(self, users: dict[str, str], allow_anonymous: bool) -> None:
        self.users = users
        self.allow_anonymous = allow_anonymous

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is not None:
            if self.users.get(username) == password:
                return User(role=UserRole.User, name=username)
            return None
        if certificate is not None:
            return User(role=UserRole.User, name="certificate")
        return User(role=UserRole.User) if self.allow_anonymous else None


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()


def load_faults(path: Path) -> list[Fault]:
    """Faults from a JSON list or JSON lines: ``{"kind", "at_secs", "duration_secs", "severity"}``."""
    text = path.read_text(encoding="utf-8").strip()
    items = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    out = []
    for it in items:
        if it.get("kind") not in FAULT_KINDS:
            raise ValueError(f"{path}: unknown fault kind {it.get('kind')!r}")
        out.append(Fault(it["kind"], float(it.get("at_secs", 0)), float(it.get("duration_secs", 30)), float(it.get("severity", 1))))
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="axedge sim machine-tool", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4840, help="TCP port; 0 picks a free one (printed as JSON)")
    p.add_argument("--name", default="MachineTool1", help="machine instance name")
    p.add_argument("--security", default="none", help="comma list of none,sign,encrypt (endpoints offered)")
    p.add_argument("--cert-dir", type=Path, help="server certificate directory (self-signed, generated once)")
    p.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD", help="accepted username/password")
    p.add_argument("--no-anonymous", action="store_true", help="reject anonymous sessions")
    p.add_argument("--labels", type=Path, help="append ground-truth fault labels here (JSON lines)")
    p.add_argument("--faults", type=Path, help="fault schedule (JSON list or lines)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--update-hz", type=float, default=10.0, help="value updates per second")
    p.add_argument("--cycle-secs", type=float, default=20.0, help="seconds per machining cycle (one part)")
    p.add_argument("--bulk-nodes", type=int, default=0, help="extra Double variables under Objects/Bulk")
    p.add_argument("--bulk-hz", type=float, default=1.0, help="updates per second of every bulk node")
    p.add_argument("--namespace-offset", type=int, default=0, help="register N padding namespaces first (shifts indices)")
    p.add_argument("--duration-secs", type=float, default=0.0, help="stop after this long (0 = until SIGTERM/Ctrl-C)")
    return p


async def _amain(args: argparse.Namespace) -> int:
    users = {}
    for u in args.user:
        name, sep, pw = u.partition(":")
        if not sep:
            print(f"--user {u!r}: expected NAME:PASSWORD", file=sys.stderr)
            return 2
        users[name] = pw
    sec = tuple(s.strip() for s in args.security.split(",") if s.strip())
    if any(s not in SECURITY_CHOICES for s in sec):
        print(f"--security: choose from {', '.join(SECURITY_CHOICES)}", file=sys.stderr)
        return 2
    faults = load_faults(args.faults) if args.faults else []
    sim = MachineToolSim(
        host=args.host, port=args.port, name=args.name, security=sec, cert_dir=args.cert_dir, users=users,
        allow_anonymous=not args.no_anonymous, seed=args.seed, update_hz=args.update_hz, cycle_secs=args.cycle_secs,
        labels_path=args.labels, faults=faults, bulk_nodes=args.bulk_nodes, bulk_hz=args.bulk_hz,
        namespace_offset=args.namespace_offset,
    )
    await sim.start()
    info = {"port": sim.port, "endpoint": sim.endpoint, "namespace_uri": NS_SIM, "machine": sim.name,
            "security": list(sec), "server_fingerprint_sha256": sim.fingerprint,
            "server_certificate": str(sim.cert_path) if sim.fingerprint else None}
    print(json.dumps(info), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if args.duration_secs > 0:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration_secs)
        else:
            await stop.wait()
    finally:
        await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    try:
        return asyncio.run(_amain(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
