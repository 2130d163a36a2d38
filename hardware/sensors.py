"""Simulated retrofit sensor nodes: vibration and temperature over MQTT, as JSON and Sparkplug B.

Each node is one asset with two signals, ``vibration`` (mm/s RMS) and ``temperature`` (Cel).
Even-numbered nodes publish JSON on ``plant/<line>/<asset>/<signal>`` (``{"value", "timestamp"}``,
ms epoch); odd-numbered ones are Sparkplug B edge nodes ``spBv1.0/<group>/N*/<asset>`` (NBIRTH with
aliases and ``bdSeq``, NDATA by alias, NDEATH as will, rebirth on NCMD ``Node Control/Rebirth``).

Faults, on a seeded random schedule (``--faults auto``) or none: ``stuck_value``,
``noise_burst``, ``dropout`` (node silent), ``sequence_gap`` (Sparkplug ``seq`` skips),
``malformed_payload`` (garbage instead of JSON / protobuf). Each fault becomes a ground-truth
label line (JSON: kind, start, end, start_ns, end_ns, signals, device, params, source) in
``--labels FILE`` when it ends.

The Sparkplug B encoder here is built from the Tahu ``Payload`` schema with the ``protobuf``
runtime, independent of the agent's own codec. This module imports nothing of the agent.

Run: ``python -m hardware.sensors --broker mqtt://127.0.0.1:1883`` or ``axedge sim sensors``;
without ``--broker`` an embedded broker is started (its URL is printed as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

FAULT_KINDS = ("stuck_value", "noise_burst", "dropout", "sequence_gap", "malformed_payload")
SIGNALS = {"vibration": "mm/s", "temperature": "Cel"}
_DOUBLE, _BOOLEAN, _INT64 = 10, 11, 4


def sparkplug_payload_class():
    """The Sparkplug B ``Payload`` message class, built at run time from the Tahu schema."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="axedge_sim_sparkplug_b.proto", package="axedge_sim.tahu", syntax="proto2")
    payload = fdp.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    for name, num, typ in (("name", 1, F.TYPE_STRING), ("alias", 2, F.TYPE_UINT64), ("timestamp", 3, F.TYPE_UINT64),
                           ("datatype", 4, F.TYPE_UINT32), ("is_historical", 5, F.TYPE_BOOL), ("is_transient", 6, F.TYPE_BOOL),
                           ("is_null", 7, F.TYPE_BOOL), ("int_value", 10, F.TYPE_UINT32), ("long_value", 11, F.TYPE_UINT64),
                           ("float_value", 12, F.TYPE_FLOAT), ("double_value", 13, F.TYPE_DOUBLE),
                           ("boolean_value", 14, F.TYPE_BOOL), ("string_value", 15, F.TYPE_STRING)):
        metric.field.add(name=name, number=num, type=typ, label=opt)
    payload.field.add(name="timestamp", number=1, type=F.TYPE_UINT64, label=opt)
    payload.field.add(name="metrics", number=2, type=F.TYPE_MESSAGE, label=rep, type_name=".axedge_sim.tahu.Payload.Metric")
    payload.field.add(name="seq", number=3, type=F.TYPE_UINT64, label=opt)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("axedge_sim.tahu.Payload"))


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Fault:
    kind: str
    node: int
    start_ns: int
    end_ns: int
    signals: list[str]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Node:
    index: int
    asset: str
    sparkplug: bool
    client: Any = None
    seq: int = 0
    bdseq: int = 0
    rebirth: bool = True  # publish NBIRTH on the next tick
    stuck: dict[str, float] = field(default_factory=dict)


class SensorSim:
    """``nodes`` sensor nodes publishing at ``rate_hz`` to ``host:port`` until :meth:`stop`."""

    def __init__(self, host: str, port: int, *, nodes: int = 4, rate_hz: float = 10.0, line: str = "line1",
                 group: str = "sensors", seed: int = 0, faults: str = "auto", fault_every_secs: float = 8.0,
                 labels: str | Path | None = None) -> None:
        self.host, self.port = host, port
        self.rate_hz = rate_hz
        self.line, self.group = line, group
        self.rng = np.random.default_rng(seed)
        self.prng = random.Random(seed)
        self.faults_mode = faults
        self.fault_every = fault_every_secs
        self.labels_path = Path(labels) if labels else None
        self.labels: list[dict[str, Any]] = []
        self.nodes = [Node(i, f"sensor{i}", sparkplug=i % 2 == 1) for i in range(nodes)]
        self.active: list[Fault] = []
        self.published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._Payload = sparkplug_payload_class() if any(n.sparkplug for n in self.nodes) else None
        self._t0 = time.monotonic()
        self._next_fault = self._t0 + fault_every_secs

    # ------------------------------------------------------------------ MQTT
    def _sp_topic(self, kind: str, node: Node) -> str:
        return f"spBv1.0/{self.group}/{kind}/{node.asset}"

    def _payload(self, seq: int | None, metrics: list[tuple]) -> bytes:
        p = self._Payload()
        p.timestamp = int(time.time() * 1000)
        if seq is not None:
            p.seq = seq
        for name, alias, dtype, value in metrics:
            m = p.metrics.add()
            if name is not None:
                m.name = name
            if alias is not None:
                m.alias = alias
            m.timestamp = p.timestamp
            m.datatype = dtype
            if dtype == _DOUBLE:
                m.double_value = value
            elif dtype == _BOOLEAN:
                m.boolean_value = value
            else:
                m.long_value = value
        return p.SerializeToString()

    def _connect(self, node: Node) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"axedge-sim-{self.group}-{node.asset}")
        if node.sparkplug:
            node.bdseq = (node.bdseq + 1) % 256
            c.will_set(self._sp_topic("NDEATH", node), self._payload(None, [("bdSeq", None, _INT64, node.bdseq)]), qos=1)

            def on_ncmd(client, userdata, msg, _n=node) -> None:
                try:
                    p = self._Payload.FromString(msg.payload)
                except Exception:  # noqa: BLE001 - a device ignores garbage commands
                    return
                if any(m.name == "Node Control/Rebirth" and m.boolean_value for m in p.metrics):
                    _n.rebirth = True

            c.on_message = on_ncmd
            c.on_connect = lambda cl, *a, _n=node: cl.subscribe(self._sp_topic("NCMD", _n), qos=1)
        c.connect(self.host, self.port, keepalive=30)
        c.loop_start()
        node.client = c

    def _publish(self, node: Node, topic: str, payload: bytes, qos: int = 0) -> None:
        node.client.publish(topic, payload, qos=qos)
        self.published += 1

    # ------------------------------------------------------------------ process
    def _values(self, t: float) -> np.ndarray:
        n = len(self.nodes)
        phase = np.arange(n)
        vib = 2.0 + 0.3 * np.sin(2 * np.pi * t / 7.0 + phase) + self.rng.normal(0, 0.05, n)
        temp = 45.0 + 5.0 * np.sin(2 * np.pi * t / 300.0 + phase) + self.rng.normal(0, 0.1, n)
        return np.stack([vib, temp], axis=1)

    def _faults(self, now: float) -> None:
        now_ns = time.time_ns()
        for f in [f for f in self.active if f.end_ns <= now_ns]:
            self.active.remove(f)
            self.nodes[f.node].stuck.clear()
            self._label(f)
        if self.faults_mode != "auto" or now < self._next_fault:
            return
        self._next_fault = now + self.fault_every * self.prng.uniform(0.7, 1.3)
        node = self.prng.randrange(len(self.nodes))
        kinds = [k for k in FAULT_KINDS if k != "sequence_gap" or self.nodes[node].sparkplug]
        self.inject(self.prng.choice(kinds), node, self.prng.uniform(2.0, 5.0))

    def inject(self, kind: str, node: int, duration_secs: float, **params: Any) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        n = self.nodes[node]
        if kind == "sequence_gap" and not n.sparkplug:
            raise ValueError("sequence_gap applies to Sparkplug B nodes (odd node numbers)")
        sigs = [params.setdefault("signal", self.prng.choice(list(SIGNALS)))] if kind in ("stuck_value", "noise_burst") else list(SIGNALS)
        start = time.time_ns()
        if kind == "sequence_gap":
            params.setdefault("skipped", self.prng.randint(2, 9))
            n.seq = (n.seq + params["skipped"]) % 256
            duration_secs = 0.0
        f = Fault(kind, node, start, start + int(duration_secs * 1e9), [f"{self.line}/{n.asset}/{s}" for s in sigs], params)
        self.active.append(f)
        return f

    def _label(self, f: Fault) -> None:
        label = {"kind": f.kind, "start": _iso(f.start_ns), "end": _iso(f.end_ns), "start_ns": f.start_ns, "end_ns": f.end_ns,
                 "signals": f.signals, "device": self.nodes[f.node].asset, "params": f.params, "source": "schedule"}
        self.labels.append(label)
        if self.labels_path is not None:
            self.labels_path.parent.mkdir(parents=True, exist_ok=True)
            with self.labels_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(label, sort_keys=True) + "\n")

    def _tick(self) -> None:
        now = time.monotonic()
        self._faults(now)
        vals = self._values(now - self._t0)
        ts = int(time.time() * 1000)
        for n in self.nodes:
            mine = {f.kind: f for f in self.active if f.node == n.index}
            if "dropout" in mine:
                continue
            row = dict(zip(SIGNALS, vals[n.index].tolist(), strict=True))
            if "stuck_value" in mine:
                sig = mine["stuck_value"].params["signal"]
                row[sig] = n.stuck.setdefault(sig, row[sig])
            if "noise_burst" in mine:
                sig = mine["noise_burst"].params["signal"]
                row[sig] += float(self.rng.normal(0, 5.0))
            garbage = "malformed_payload" in mine
            if n.sparkplug:
                self._tick_sparkplug(n, row, garbage)
            else:
                for sig, v in row.items():
                    topic = f"plant/{self.line}/{n.asset}/{sig}"
                    body = b'{"value": 1.0, "timestamp": ' if garbage else json.dumps({"value": round(v, 4), "timestamp": ts}).encode()
                    self._publish(n, topic, body)

    def _tick_sparkplug(self, n: Node, row: dict[str, float], garbage: bool) -> None:
        if n.rebirth:
            n.rebirth = False
            n.seq = 0
            metrics = [("bdSeq", None, _INT64, n.bdseq), ("Node Control/Rebirth", None, _BOOLEAN, False)]
            metrics += [(sig, k + 1, _DOUBLE, row[sig]) for k, sig in enumerate(SIGNALS)]
            self._publish(n, self._sp_topic("NBIRTH", n), self._payload(0, metrics), qos=1)
            return
        n.seq = (n.seq + 1) % 256
        if garbage:
            body = bytes(self.rng.integers(0, 256, 24, dtype=np.uint8))
        else:
            body = self._payload(n.seq, [(None, k + 1, _DOUBLE, row[sig]) for k, sig in enumerate(SIGNALS)])
        self._publish(n, self._sp_topic("NDATA", n), body)

    # ------------------------------------------------------------------ run
    def start(self) -> None:
        for n in self.nodes:
            self._connect(n)
        self._thread = threading.Thread(target=self._run, name="sensor-sim", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        nxt = time.monotonic()
        while not self._stop.is_set():
            self._tick()
            nxt += period
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for f in list(self.active):  # faults cut short by the stop still become labels
            f.end_ns = min(f.end_ns, time.time_ns())
            self.active.remove(f)
            self._label(f)
        for n in self.nodes:
            if n.client is not None:
                if n.sparkplug:  # a clean shutdown sends NDEATH itself (the will is for crashes)
                    n.client.publish(self._sp_topic("NDEATH", n), self._payload(None, [("bdSeq", None, _INT64, n.bdseq)]), qos=1).wait_for_publish(2)
                n.client.disconnect()
                n.client.loop_stop()


async def _amain(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if args.broker:
            u = urlparse(args.broker)
            if u.scheme not in ("mqtt", "tcp") or not u.hostname:
                raise ValueError(f"--broker must look like mqtt://host:port, got {args.broker!r}")
            host, port = u.hostname, u.port or 1883
        else:
            from hardware.broker import EmbeddedBroker

            b = await stack.enter_async_context(EmbeddedBroker("127.0.0.1", args.port))
            host, port = b.host, b.port
        sim = SensorSim(host, port, nodes=args.nodes, rate_hz=args.rate_hz, line=args.line, group=args.group,
                        seed=args.seed, faults=args.faults, fault_every_secs=args.fault_every_secs, labels=args.labels)
        await asyncio.to_thread(sim.start)
        print(json.dumps({"broker": f"mqtt://{host}:{port}", "nodes": args.nodes, "group": args.group, "line": args.line}), flush=True)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration_secs)
        finally:
            await asyncio.to_thread(sim.stop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="axedge sim sensors", description="Simulated vibration/temperature sensor nodes (MQTT JSON + Sparkplug B)")
    p.add_argument("--broker", help="mqtt://host:port of the broker; default: start an embedded broker")
    p.add_argument("--port", type=int, default=1884, help="port of the embedded broker (0 = free port)")
    p.add_argument("--nodes", type=int, default=4, help="sensor nodes; even ones publish JSON, odd ones Sparkplug B")
    p.add_argument("--rate-hz", type=float, default=10.0, help="samples per second per signal")
    p.add_argument("--line", default="line1", help="line level of the JSON topics")
    p.add_argument("--group", default="sensors", help="Sparkplug group id")
    p.add_argument("--faults", choices=("auto", "none"), default="auto", help="random fault schedule or none")
    p.add_argument("--fault-every-secs", type=float, default=8.0, help="mean time between faults")
    p.add_argument("--labels", help="append ground-truth fault labels (JSON lines) to this file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration-secs", type=float, default=None, help="stop after this many seconds (default: until SIGINT/SIGTERM)")
    args = p.parse_args(argv)
    if args.nodes < 1 or args.rate_hz <= 0:
        p.error("--nodes must be >= 1 and --rate-hz > 0")
    try:
        asyncio.run(_amain(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot reach the broker: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
