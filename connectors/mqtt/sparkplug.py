"""Sparkplug B host application state machine (pure logic, no I/O).

Per edge node it tracks the birth (metric names, aliases, datatypes per device), ``bdSeq`` and
``seq``. It turns messages into rows and tells the caller what to do about problems:

* NBIRTH / DBIRTH register signals (``<asset>/<metric>``) and map aliases; birth values are rows.
* NDATA / DDATA resolve metrics by alias (or name). A missing birth, an unknown alias or a ``seq``
  gap asks for a rebirth (NCMD ``Node Control/Rebirth``, rate limited per node).
* NDEATH (with the current ``bdSeq``) / DDEATH mark the node's / device's signals stale: one
  null row each with quality ``BAD_NOT_CONNECTED``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from connectors.mqtt.sparkplug_codec import TEXT_TYPES, Metric, SparkplugError, SpDataType, decode_payload
from connectors.mqtt.topics import clean_level, clean_metric_name
from dataset_builder.format import Quality
from edge_agent.signals import DataType, SignalSpec

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"

_DTYPES = {
    SpDataType.Int8: DataType.int8, SpDataType.Int16: DataType.int16, SpDataType.Int32: DataType.int32,
    SpDataType.Int64: DataType.int64, SpDataType.UInt8: DataType.uint8, SpDataType.UInt16: DataType.uint16,
    SpDataType.UInt32: DataType.uint32, SpDataType.UInt64: DataType.uint64, SpDataType.Float: DataType.float32,
    SpDataType.Double: DataType.float64, SpDataType.Boolean: DataType.bool, SpDataType.String: DataType.string,
    SpDataType.Text: DataType.string, SpDataType.UUID: DataType.string, SpDataType.DateTime: DataType.datetime,
}


class Rows:
    """Column lists for one chunk (turned into numpy arrays by the connector)."""

    __slots__ = ("sid", "src", "recv", "val", "text", "qual", "has_text", "has_null", "now")

    def __init__(self) -> None:
        self.now = 0  # receive time (ns) of the message being decoded; set by the caller
        self.recv: list[int] = []
        self.sid: list[int] = []
        self.src: list[int] = []
        self.val: list[float] = []
        self.text: list[str | None] = []
        self.qual: list[int] = []
        self.has_text = False
        self.has_null = False

    def add(self, sid: int, src_ns: int, val: float, text: str | None, q: int) -> None:
        self.sid.append(sid)
        self.src.append(src_ns)
        self.recv.append(self.now)
        self.val.append(val)
        self.text.append(text)
        self.qual.append(q)
        if text is not None:
            self.has_text = True

    def __len__(self) -> int:
        return len(self.sid)


@dataclass
class Problem:
    """Something the caller must quarantine (``reason``) and/or answer with a rebirth request."""

    reason: str
    detail: str
    quarantine: bool = True


@dataclass
class _Node:
    group: str
    node: str
    born: bool = False
    bdseq: int | None = None
    seq: int | None = None
    aliases: dict[int, tuple[int, int]] = field(default_factory=dict)  # alias -> (signal id, datatype)
    names: dict[tuple[str | None, str], tuple[int, int]] = field(default_factory=dict)  # (device, name) -> ...
    devices: dict[str | None, set[int]] = field(default_factory=dict)  # device (None: node) -> signal ids
    last_rebirth: float = float("-inf")


@dataclass
class HostResult:
    problems: list[Problem] = field(default_factory=list)
    rebirth: tuple[str, str] | None = None  # (group, node) to send NCMD Rebirth to
    gaps: int = 0
    skipped_metrics: int = 0


class SparkplugHost:
    def __init__(
        self,
        connector_id: str,
        register: Callable[[SignalSpec], int],
        *,
        base_asset: str,
        asset_template: str | None = None,
        units: dict[str, str] | None = None,
        request_rebirth: bool = True,
        rebirth_min_interval_secs: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connector_id = connector_id
        self.register = register
        self.base_asset = base_asset.strip("/")
        self.asset_template = asset_template
        self.units = units or {}
        self.request_rebirth = request_rebirth
        self.rebirth_min_interval = rebirth_min_interval_secs
        self.clock = clock
        self.nodes: dict[tuple[str, str], _Node] = {}

    # ------------------------------------------------------------------ helpers
    def _asset(self, group: str, node: str, device: str | None) -> str:
        vars_ = {"group": clean_level(group), "node": clean_level(node), "device": clean_level(device or "")}
        if self.asset_template:
            path = self.asset_template.format_map(vars_)
        else:
            path = "/".join(p for p in (self.base_asset, vars_["group"], vars_["node"], vars_["device"] if device else "") if p)
        return "/".join(p for p in path.split("/") if p)

    def _ask_rebirth(self, n: _Node, res: HostResult) -> None:
        if not self.request_rebirth:
            return
        now = self.clock()
        if now - n.last_rebirth >= self.rebirth_min_interval:
            n.last_rebirth = now
            res.rebirth = (n.group, n.node)

    def _check_seq(self, n: _Node, seq: int | None, res: HostResult) -> None:
        if seq is None:
            return
        if n.seq is not None and seq != (n.seq + 1) % 256:
            res.gaps += 1
            res.problems.append(Problem("seq_gap", f"expected seq {(n.seq + 1) % 256}, got {seq}", quarantine=False))
            self._ask_rebirth(n, res)
        n.seq = seq

    @staticmethod
    def _value(m: Metric, dt: int) -> tuple[float, str | None, bool]:
        """(value, text, valid)."""
        v = m.value
        if m.is_null or v is None:
            return float("nan"), None, False
        if dt in TEXT_TYPES:
            return float("nan"), str(v), True
        if dt == SpDataType.DateTime:
            try:
                iso = datetime.fromtimestamp(int(v) / 1000, tz=timezone.utc).isoformat()
            except (OverflowError, ValueError, OSError):
                return float("nan"), None, False
            return float("nan"), iso, True
        if isinstance(v, (bytes, str)):
            return float("nan"), None, False
        return float(v), None, True

    # ------------------------------------------------------------------ entry point
    def handle(self, topic: str, payload: bytes, recv_ns: int, rows: Rows, stale_quality: int = Quality.BAD_NOT_CONNECTED) -> HostResult:
        """Process one message on ``spBv1.0/<group>/<type>/<node>[/<device>]``."""
        res = HostResult()
        parts = topic.split("/")
        if len(parts) < 4 or parts[0] != NAMESPACE or parts[1] == "STATE":
            if len(parts) >= 2 and parts[1] == "STATE":
                return res
            res.problems.append(Problem("bad_topic", "not a Sparkplug B topic"))
            return res
        group, mtype, node = parts[1], parts[2], parts[3]
        device = parts[4] if len(parts) > 4 else None
        if mtype in ("NCMD", "DCMD"):
            return res
        try:
            p = decode_payload(payload)
        except SparkplugError as exc:
            res.problems.append(Problem("invalid_protobuf", str(exc)))
            return res
        key = (group, node)
        n = self.nodes.get(key)
        if n is None:
            n = self.nodes[key] = _Node(group, node)
        ts_default = p.timestamp * 1_000_000 if p.timestamp is not None else recv_ns

        if mtype == "NBIRTH":
            n.born = True
            n.aliases.clear()
            n.names.clear()
            n.devices = {None: set()}
            n.seq = p.seq
            for m in p.metrics:
                if m.name == "bdSeq":
                    n.bdseq = int(m.value) if isinstance(m.value, int) else None
                    continue
                self._birth_metric(n, None, m, ts_default, rows, res)
            return res
        if mtype == "NDEATH":
            bd = next((m.value for m in p.metrics if m.name == "bdSeq"), None)
            if n.born and (bd is None or n.bdseq is None or bd == n.bdseq):
                self._stale(n, None, recv_ns, rows, stale_quality, whole_node=True)
                n.born = False
                n.seq = None
            return res
        if not n.born:
            res.problems.append(Problem("no_birth", f"{mtype} from {group}/{node} before its NBIRTH"))
            self._ask_rebirth(n, res)
            return res
        self._check_seq(n, p.seq, res)
        if mtype == "DBIRTH":
            if device is None:
                res.problems.append(Problem("bad_topic", "DBIRTH without a device id"))
                return res
            n.devices[device] = set()
            for m in p.metrics:
                self._birth_metric(n, device, m, ts_default, rows, res)
            return res
        if mtype == "DDEATH":
            if device in n.devices:
                self._stale(n, device, recv_ns, rows, stale_quality)
                del n.devices[device]
            return res
        if mtype in ("NDATA", "DDATA"):
            if mtype == "DDATA" and device not in n.devices:
                res.problems.append(Problem("no_birth", f"DDATA from {group}/{node}/{device} before its DBIRTH"))
                self._ask_rebirth(n, res)
                return res
            unknown = 0
            for m in p.metrics:
                ref = n.aliases.get(m.alias) if m.alias is not None and m.name is None else None
                if ref is None and m.name is not None:
                    ref = n.names.get((device, m.name))
                if ref is None:
                    unknown += 1
                    continue
                sid, dt = ref
                val, text, valid = self._value(m, m.datatype or dt)
                ts = m.timestamp * 1_000_000 if m.timestamp is not None else ts_default
                if not valid:
                    rows.has_null = True
                rows.add(sid, ts, val, text, Quality.GOOD if valid or m.is_null else Quality.BAD_DECODING_ERROR)
            if unknown:
                res.problems.append(Problem("unknown_alias", f"{unknown} metric(s) with an unknown alias/name from {group}/{node}"))
                self._ask_rebirth(n, res)
            return res
        res.problems.append(Problem("bad_topic", f"unknown Sparkplug message type {mtype!r}"))
        return res

    def _birth_metric(self, n: _Node, device: str | None, m: Metric, ts_default: int, rows: Rows, res: HostResult) -> None:
        if m.name is None:
            res.problems.append(Problem("birth_without_name", "a birth metric has no name", quarantine=False))
            return
        if m.name.startswith(("Node Control/", "Device Control/", "Properties/")) or m.datatype not in _DTYPES:
            if m.datatype not in _DTYPES:
                res.skipped_metrics += 1
            return
        name = clean_metric_name(m.name)
        prefix = f"{NAMESPACE}/{n.group}/{n.node}" + (f"/{device}" if device else "")
        sid = self.register(SignalSpec(
            name=name,
            asset=self._asset(n.group, n.node, device),
            dtype=_DTYPES[SpDataType(m.datatype)],
            unit=self.units.get(name),
            address=f"{prefix}:{m.name}",
            connector=self.connector_id,
            extra={"sparkplug_datatype": SpDataType(m.datatype).name},
        ))
        ref = (sid, m.datatype)
        if m.alias is not None:
            n.aliases[m.alias] = ref
        n.names[(device, m.name)] = ref
        n.devices.setdefault(device, set()).add(sid)
        val, text, valid = self._value(m, m.datatype)
        ts = m.timestamp * 1_000_000 if m.timestamp is not None else ts_default
        if not valid:
            rows.has_null = True
        rows.add(sid, ts, val, text, Quality.GOOD if valid or m.is_null else Quality.BAD_DECODING_ERROR)

    def _stale(self, n: _Node, device: str | None, at_ns: int, rows: Rows, q: int, whole_node: bool = False) -> None:
        groups = n.devices.values() if whole_node else [n.devices.get(device, set())]
        for sids in groups:
            for sid in sorted(sids):
                rows.add(sid, at_ns, float("nan"), None, q)
                rows.has_null = True


def rebirth_topic(group: str, node: str) -> str:
    return f"{NAMESPACE}/{group}/NCMD/{node}"


def rebirth_metrics() -> list[Metric]:
    return [Metric(name=REBIRTH_METRIC, timestamp=int(time.time() * 1000), datatype=SpDataType.Boolean, value=True)]


