"""Node addressing, metadata and value conversion for the OPC UA connectors.

* :func:`parse_node_id` / :func:`parse_browse_path`: pure parsing of the config strings.
* :func:`resolve_nodes`: namespace URIs -> indices, browse paths -> NodeIds, on a live session
  (called on *every* new session: indices may change when the server restarts).
* :func:`read_metadata`: DataType, ValueRank, EngineeringUnits and EURange in a few batched requests.
* :func:`convert`: a Variant value -> ``(float, text)`` for the sample arrays.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import ua

from edge_agent.errors import ConfigError
from edge_agent.signals import DataType

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_US = dt.timedelta(microseconds=1)

_NODEID = re.compile(r"^(?:(?:nsu=(?P<nsu>[^;]+)|ns=(?P<ns>\d+));)?(?P<kind>[isgb])=(?P<ident>.+)$", re.S)


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A parsed node id: namespace by URI (preferred) or by index."""

    kind: str  # i | s | g | b
    ident: str
    namespace_uri: str | None = None
    namespace_index: int | None = None

    def to_node_id(self, ns_index: dict[str, int]) -> ua.NodeId:
        if self.namespace_uri is not None:
            if self.namespace_uri not in ns_index:
                raise KeyError(self.namespace_uri)
            idx = ns_index[self.namespace_uri]
        else:
            idx = self.namespace_index or 0
        if self.kind == "i":
            return ua.NodeId(int(self.ident), idx, ua.NodeIdType.Numeric)
        if self.kind == "s":
            return ua.NodeId(self.ident, idx, ua.NodeIdType.String)
        if self.kind == "g":
            import uuid

            return ua.NodeId(uuid.UUID(self.ident), idx, ua.NodeIdType.Guid)
        return ua.NodeId(base64.b64decode(self.ident), idx, ua.NodeIdType.ByteString)


def parse_node_id(text: str, *, allow_index: bool) -> NodeRef:
    """Parse ``nsu=<uri>;s=<id>``, ``ns=<n>;i=<id>`` or ``i=<id>`` (namespace 0)."""
    m = _NODEID.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a NodeId (expected e.g. 'nsu=urn:x;s=Speed' or 'i=2258')")
    kind, ident = m.group("kind"), m.group("ident")
    if kind == "i" and not ident.isdigit():
        raise ValueError(f"{text!r}: numeric identifier expected after 'i='")
    if m.group("nsu") is not None:
        return NodeRef(kind, ident, namespace_uri=m.group("nsu"))
    idx = int(m.group("ns") or 0)
    if idx != 0 and not allow_index:
        raise ValueError(
            f"{text!r} uses a namespace index; indices can change when the server restarts. "
            "Use 'nsu=<namespace uri>;...' or set numeric_namespace: allow"
        )
    return NodeRef(kind, ident, namespace_index=idx)


@dataclass(frozen=True, slots=True)
class PathSegment:
    name: str
    namespace_uri: str | None = None  # None: match any namespace
    namespace_index: int | None = None


@dataclass(frozen=True, slots=True)
class BrowsePath:
    start: int  # numeric NodeId in ns 0 (RootFolder 84 or ObjectsFolder 85)
    segments: tuple[PathSegment, ...]


def parse_browse_path(text: str, aliases: dict[str, str], *, allow_index: bool) -> BrowsePath:
    """``Objects/mt:Machines/Mill1/Monitoring/Spindle/Override``: names may carry an alias
    prefix (from ``namespaces``) or, with ``allow_index``, a numeric one (``2:Name``)."""
    parts = [p for p in text.strip().strip("/").split("/") if p]
    if not parts:
        raise ValueError("empty browse path")
    start = ua.ObjectIds.ObjectsFolder
    first = parts[0].split(":", 1)[-1]
    if first == "Root":
        start, parts = ua.ObjectIds.RootFolder, parts[1:]
    elif first == "Objects":
        parts = parts[1:]
    segs: list[PathSegment] = []
    for p in parts:
        prefix, sep, name = p.partition(":")
        if sep and prefix in aliases:
            segs.append(PathSegment(name, namespace_uri=aliases[prefix]))
        elif sep and prefix.isdigit():
            if int(prefix) != 0 and not allow_index:
                raise ValueError(f"browse path segment {p!r} uses a namespace index; define an alias under 'namespaces'")
            segs.append(PathSegment(name, namespace_index=int(prefix)))
        else:
            segs.append(PathSegment(p))
    if not segs:
        raise ValueError("browse path names no node below its start")
    return BrowsePath(start, tuple(segs))


def format_node_id(node_id: ua.NodeId, namespaces: Sequence[str]) -> str:
    """``nsu=<uri>;s=...`` (``i=...`` for namespace 0): stable across server restarts."""
    kind = {
        ua.NodeIdType.Numeric: "i",
        ua.NodeIdType.TwoByte: "i",
        ua.NodeIdType.FourByte: "i",
        ua.NodeIdType.String: "s",
        ua.NodeIdType.Guid: "g",
        ua.NodeIdType.ByteString: "b",
    }[node_id.NodeIdType]
    ident = node_id.Identifier
    if kind == "b":
        ident = base64.b64encode(ident).decode()
    if node_id.NamespaceIndex == 0:
        return f"{kind}={ident}"
    uri = namespaces[node_id.NamespaceIndex] if node_id.NamespaceIndex < len(namespaces) else None
    if uri is None:
        return f"ns={node_id.NamespaceIndex};{kind}={ident}"
    return f"nsu={uri};{kind}={ident}"


# --- batched services ---------------------------------------------------------------------------


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), max(1, n)):
        yield seq[i : i + n]


async def browse_many(
    session,
    node_ids: Sequence[ua.NodeId],
    *,
    reference_type: int = ua.ObjectIds.HierarchicalReferences,
    direction: ua.BrowseDirection = ua.BrowseDirection.Forward,
    node_class_mask: int = 0,
    per_request: int = 200,
) -> list[list[ua.ReferenceDescription]]:
    """Browse many nodes in batched requests, following continuation points."""
    out: list[list[ua.ReferenceDescription]] = []
    for part in _chunks(list(node_ids), per_request):
        params = ua.BrowseParameters()
        params.RequestedMaxReferencesPerNode = 1000
        for nid in part:
            d = ua.BrowseDescription()
            d.NodeId = nid
            d.BrowseDirection = direction
            d.ReferenceTypeId = ua.NodeId(reference_type)
            d.IncludeSubtypes = True
            d.NodeClassMask = node_class_mask
            d.ResultMask = ua.BrowseResultMask.All
            params.NodesToBrowse.append(d)
        results = await session.browse(params)
        for res in results:
            refs = list(res.References or [])
            cp = res.ContinuationPoint
            while cp:
                nxt = ua.BrowseNextParameters()
                nxt.ContinuationPoints = [cp]
                more = (await session.browse_next(nxt))[0]
                refs.extend(more.References or [])
                cp = more.ContinuationPoint
            out.append(refs)
    return out


async def read_attribute(session, node_ids: Sequence[ua.NodeId], attr: int, per_request: int = 1000) -> list[ua.DataValue]:
    """Read one attribute of many nodes, chunked."""
    out: list[ua.DataValue] = []
    for part in _chunks(list(node_ids), per_request):
        params = ua.ReadParameters()
        for nid in part:
            rv = ua.ReadValueId()
            rv.NodeId = nid
            rv.AttributeId = attr
            params.NodesToRead.append(rv)
        out.extend(await session.read(params))
    return out


@dataclass(slots=True)
class Resolved:
    """Node ids for each configured node (None when it cannot be found on this server)."""

    node_ids: list[ua.NodeId | None]
    problems: list[str]
    namespaces: list[str]


async def resolve_nodes(session, nodes: Sequence[Any], aliases: dict[str, str], allow_index: bool) -> Resolved:
    """Resolve the configured nodes on this session. Unknown namespace URIs and missing browse
    paths are reported per node (the node becomes a BadNodeIdUnknown gap), not fatal."""
    ns_array = (await read_attribute(session, [ua.NodeId(ua.ObjectIds.Server_NamespaceArray)], ua.AttributeIds.Value))[0]
    namespaces: list[str] = list(ns_array.Value.Value or [])
    ns_index = {uri: i for i, uri in enumerate(namespaces)}
    out: list[ua.NodeId | None] = [None] * len(nodes)
    problems: list[str] = []
    paths: list[tuple[int, BrowsePath]] = []
    for i, n in enumerate(nodes):
        try:
            if n.node_id is not None:
                out[i] = parse_node_id(n.node_id, allow_index=allow_index).to_node_id(ns_index)
            else:
                paths.append((i, parse_browse_path(n.browse_path, aliases, allow_index=allow_index)))
        except KeyError as exc:
            problems.append(f"node {n.name}: namespace {exc.args[0]!r} is not on the server")
        except ValueError as exc:
            raise ConfigError(f"node {n.name}: {exc}") from exc
    if paths:
        await _walk_paths(session, paths, ns_index, out, problems, nodes)
    return Resolved(out, problems, namespaces)


async def _walk_paths(session, paths, ns_index, out, problems, nodes) -> None:
    """Walk all browse paths level by level, one batched Browse per level, children cached."""
    cache: dict[ua.NodeId, list[ua.ReferenceDescription]] = {}
    current: dict[int, ua.NodeId | None] = {i: ua.NodeId(p.start) for i, p in paths}
    depth = max(len(p.segments) for _, p in paths)
    for level in range(depth):
        need = {nid for i, p in paths if level < len(p.segments) and (nid := current[i]) is not None and nid not in cache}
        need_list = list(need)
        for nid, refs in zip(need_list, await browse_many(session, need_list), strict=True):
            cache[nid] = refs
        for i, p in paths:
            nid = current[i]
            if level >= len(p.segments) or nid is None:
                continue
            seg = p.segments[level]
            want_ns = ns_index.get(seg.namespace_uri, -1) if seg.namespace_uri is not None else seg.namespace_index
            match = None
            for ref in cache[nid]:
                bn = ref.BrowseName
                if bn.Name == seg.name and (want_ns is None or bn.NamespaceIndex == want_ns):
                    match = ref.NodeId
                    break
            if match is None:
                problems.append(f"node {nodes[i].name}: browse path {nodes[i].browse_path!r} not found at {seg.name!r}")
            current[i] = match
    for i, _ in paths:
        out[i] = current[i]


# --- metadata -----------------------------------------------------------------------------------

_BUILTIN: dict[int, DataType] = {
    1: DataType.bool, 2: DataType.int8, 3: DataType.uint8, 4: DataType.int16, 5: DataType.uint16,
    6: DataType.int32, 7: DataType.uint32, 8: DataType.int64, 9: DataType.uint64, 10: DataType.float32,
    11: DataType.float64, 12: DataType.string, 13: DataType.datetime, 14: DataType.string, 15: DataType.string,
    17: DataType.string, 19: DataType.uint32, 20: DataType.string, 21: DataType.string, 26: DataType.float64,
    27: DataType.int64, 28: DataType.uint64, 29: DataType.int32, 290: DataType.float64, 294: DataType.datetime,
    295: DataType.string, 12877: DataType.string,
}

#: UNECE Recommendation 20 common codes -> UCUM (the codes axedge datasets use)
_UNECE_TO_UCUM = {
    "CEL": "Cel", "FAH": "[degF]", "KEL": "K", "MMT": "mm", "MTR": "m", "CMT": "cm", "MTS": "m/s",
    "RPM": "/min", "HTZ": "Hz", "P1": "%", "BAR": "bar", "PAL": "Pa", "KPA": "kPa", "WTT": "W",
    "KWT": "kW", "AMP": "A", "VLT": "V", "NEW": "N", "NU": "N.m", "SEC": "s", "MIN": "min", "HUR": "h",
    "KGM": "kg", "GRM": "g", "LTR": "L", "MMS": "mm/s", "MMQ": "mm3", "C81": "rad", "DD": "deg",
    "M62": "mm/min", "2N": "dB", "MSK": "m/s2", "L2": "L/min",
}


def unece_code(unit_id: int) -> str:
    """Decode a UNECE common code packed into EUInformation.UnitId (e.g. 4408652 -> 'CEL')."""
    chars = [(unit_id >> s) & 0xFF for s in (16, 8, 0)]
    return "".join(chr(c) for c in chars if c).strip()


@dataclass(slots=True)
class NodeMeta:
    dtype: DataType
    opcua_type: str
    is_array: bool
    unit: str | None
    eu: dict[str, Any] | None
    eu_range: tuple[float, float] | None


async def read_metadata(session, node_ids: Sequence[ua.NodeId], per_request: int = 1000) -> list[NodeMeta]:
    """DataType, ValueRank, EngineeringUnits and EURange of each node, in batched requests."""
    dtypes = await read_attribute(session, node_ids, ua.AttributeIds.DataType, per_request)
    ranks = await read_attribute(session, node_ids, ua.AttributeIds.ValueRank, per_request)
    props: list[list[ua.NodeId | None]] = [[None, None] for _ in node_ids]
    bpaths = []
    for nid in node_ids:
        for name in ("EngineeringUnits", "EURange"):
            el = ua.RelativePathElement()
            el.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasProperty)
            el.IsInverse = False
            el.IncludeSubtypes = True
            el.TargetName = ua.QualifiedName(name, 0)
            bp = ua.BrowsePath()
            bp.StartingNode = nid
            bp.RelativePath = ua.RelativePath([el])
            bpaths.append(bp)
    results: list[ua.BrowsePathResult] = []
    for part in _chunks(bpaths, per_request):
        results.extend(await session.translate_browsepaths_to_nodeids(list(part)))
    to_read: list[ua.NodeId] = []
    where: list[tuple[int, int]] = []
    for k, res in enumerate(results):
        if res.StatusCode.is_good() and res.Targets:
            to_read.append(res.Targets[0].TargetId)
            where.append((k // 2, k % 2))
    values = await read_attribute(session, to_read, ua.AttributeIds.Value, per_request) if to_read else []
    for (i, j), dv in zip(where, values, strict=True):
        props[i][j] = dv.Value.Value if dv.StatusCode.is_good() and dv.Value is not None else None
    dt_ids = [dv.Value.Value if dv.StatusCode.is_good() and dv.Value is not None else None for dv in dtypes]
    base = await _base_types(session, [d for d in dt_ids if d is not None])
    out: list[NodeMeta] = []
    for i, _ in enumerate(node_ids):
        d = dt_ids[i]
        rank = ranks[i].Value.Value if ranks[i].StatusCode.is_good() and ranks[i].Value is not None else -1
        is_array = isinstance(rank, int) and rank >= 0
        dtype = DataType.json if is_array else base.get(d, DataType.json) if d is not None else DataType.float64
        eu, rng = props[i]
        unit = eu_dict = None
        if isinstance(eu, ua.EUInformation):
            code = unece_code(eu.UnitId) if eu.UnitId > 0 else ""
            display = eu.DisplayName.Text if eu.DisplayName else None
            unit = _UNECE_TO_UCUM.get(code) or display or None
            eu_dict = {"unece": code or None, "display_name": display, "namespace_uri": eu.NamespaceUri}
        eu_range = (float(rng.Low), float(rng.High)) if isinstance(rng, ua.Range) else None
        out.append(NodeMeta(dtype, _type_name(d), is_array, unit, eu_dict, eu_range))
    return out


def _type_name(d: ua.NodeId | None) -> str:
    if d is None:
        return "unknown"
    if d.NamespaceIndex == 0 and isinstance(d.Identifier, int):
        return ua.ObjectIdNames.get(d.Identifier, f"i={d.Identifier}")
    return d.to_string()


async def _base_types(session, type_ids: Iterable[ua.NodeId]) -> dict[ua.NodeId, DataType]:
    """Map each DataType node to an axedge type, walking HasSubtype up to a built-in type
    (enumerations -> int32, structures -> json)."""
    result: dict[ua.NodeId, DataType] = {}
    pending: dict[ua.NodeId, ua.NodeId] = {}  # original -> current ancestor
    for t in set(type_ids):
        if t.NamespaceIndex == 0 and t.Identifier in _BUILTIN:
            result[t] = _BUILTIN[t.Identifier]
        else:
            pending[t] = t
    for _ in range(8):
        if not pending:
            break
        cur = list(set(pending.values()))
        parents = dict(zip(cur, await browse_many(session, cur, reference_type=ua.ObjectIds.HasSubtype,
                                                  direction=ua.BrowseDirection.Inverse), strict=True))
        nxt: dict[ua.NodeId, ua.NodeId] = {}
        for orig, c in pending.items():
            refs = parents.get(c) or []
            if not refs:
                result[orig] = DataType.json
                continue
            p = refs[0].NodeId
            if p.NamespaceIndex == 0 and p.Identifier in _BUILTIN:
                result[orig] = _BUILTIN[p.Identifier]
            elif p.NamespaceIndex == 0 and p.Identifier == ua.ObjectIds.Structure:
                result[orig] = DataType.json
            else:
                nxt[orig] = p
        pending = nxt
    for orig in pending:
        result[orig] = DataType.json
    return result


# --- hot path -----------------------------------------------------------------------------------


_MAX_NS = 2**63 - 1


def to_ns(t: dt.datetime | None) -> int:
    """An aware (UTC) datetime as int ns since the epoch; 0 (unknown) when missing or outside
    the int64 range (OPC UA's DateTime MinValue 1601-01-01 and MaxValue mean "not set")."""
    if t is None:
        return 0
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    ns = ((t - _EPOCH) // _US) * 1000
    return ns if 0 < ns < _MAX_NS else 0


def _json_default(o: Any) -> Any:
    if isinstance(o, dt.datetime):
        return o.isoformat()
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode()
    if isinstance(o, ua.LocalizedText):
        return o.Text
    if hasattr(o, "__dataclass_fields__"):
        return {k: getattr(o, k) for k in o.__dataclass_fields__}
    return str(o)


def convert(v: Any) -> tuple[float, str | None, bool]:
    """``(value, text, valid)`` for one Variant value. Numbers go to ``value``; strings, DateTime
    (ISO 8601), LocalizedText, arrays and structures (JSON) go to ``text``."""
    t = type(v)
    if t is float or t is int or t is bool:
        return float(v), None, True
    if v is None:
        return float("nan"), None, False
    if t is str:
        return float("nan"), v, True
    if isinstance(v, int):  # IntEnum, numpy ints
        return float(v), None, True
    if isinstance(v, dt.datetime):
        return float("nan"), v.isoformat(), True
    if isinstance(v, ua.LocalizedText):
        return float("nan"), v.Text, True
    if isinstance(v, (bytes, bytearray)):
        return float("nan"), base64.b64encode(v).decode(), True
    if isinstance(v, (list, tuple)):
        return float("nan"), json.dumps(list(v), default=_json_default), True
    if isinstance(v, ua.StatusCode):
        return float(v.value), None, True
    if isinstance(v, (ua.QualifiedName, ua.NodeId)):
        return float("nan"), v.to_string(), True
    return float("nan"), json.dumps(v, default=_json_default), True
