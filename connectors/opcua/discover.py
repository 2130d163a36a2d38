"""``axedge discover opcua ENDPOINT --out FILE.yaml``: browse a server, write a connector section.

The address space is browsed breadth-first from ``--root`` (default: the Objects folder, without
the Server object), level by level in batched Browse requests with a bounded number in flight,
up to ``--max-depth`` levels and ``--max-nodes`` nodes, with progress on stderr. Every variable
becomes a node entry with its NodeId (by namespace URI), unit (EngineeringUnits), data type and
asset path.

umati machine tools (OPC 40501: an object of MachineToolType, or an object with Identification,
Monitoring and Production components) are mapped into the asset hierarchy: the machine becomes an
asset under ``--asset``; its variables are named by their path below the machine
(``Monitoring.Spindle.Override``) and carry a semantic id naming the umati component they belong
to (``http://opcfoundation.org/UA/MachineTool/#Monitoring/Spindle/Override``).

The written file is a complete config (``connectors:`` with one section) that
``edge_agent.config.load_config`` accepts; it is validated before it is written.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NS_DI = "http://opcfoundation.org/UA/DI/"
NS_MACHINERY = "http://opcfoundation.org/UA/Machinery/"
NS_MT = "http://opcfoundation.org/UA/MachineTool/"
UMATI_PARTS = {"Identification", "Monitoring", "Production", "Notification", "Equipment"}
#: properties that describe a variable rather than being signals themselves
META_PROPERTIES = {
    "EngineeringUnits", "EURange", "InstrumentRange", "EnumStrings", "EnumValues", "ValuePrecision", "Definition",
    "NodeVersion", "TrueState", "FalseState", "ValueAsText", "MaxTimeInterval", "MinTimeInterval", "ExceptionDeviation",
    "ExceptionDeviationFormat", "AxisScaleType", "Title", "DefaultInputArguments", "InputArguments", "OutputArguments",
    "NamespaceUri", "EffectiveDisplayName", "DataTypeVersion", "DictionaryFragment",
}
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(slots=True)
class Found:
    """A browsed node: its path of browse names below the root and what it is."""

    node_id: Any
    path: tuple[str, ...]
    node_class: int
    type_def: Any = None
    browse_ns: int = 0
    children: list[Found] = field(default_factory=list)


def slug(name: str, limit: int = 63) -> str:
    s = _NAME_BAD.sub("_", name).strip("_.-") or "x"
    if not s[0].isalnum() and s[0] != "_":
        s = "_" + s
    return s[:limit]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="axedge discover opcua", description="Browse an OPC UA server and write a connector config section.")
    p.add_argument("endpoint", help="opc.tcp://host:port")
    p.add_argument("--out", required=True, type=Path, help="YAML file to write")
    p.add_argument("--root", default="Objects", help="browse path to start from (default: Objects)")
    p.add_argument("--max-depth", type=int, default=12, help="levels below the root (default 12)")
    p.add_argument("--max-nodes", type=int, default=20_000, help="stop after browsing this many nodes (default 20000)")
    p.add_argument("--concurrency", type=int, default=4, help="Browse requests in flight (default 4)")
    p.add_argument("--id", default="opcua1", help="connector id to write")
    p.add_argument("--asset", default="site/area/line", help="asset path prefix (machines become assets below it)")
    p.add_argument("--type", dest="ctype", choices=("opcua_subscription", "opcua_polling"), default="opcua_subscription")
    p.add_argument("--security", default="None", help="None | Sign | SignAndEncrypt")
    p.add_argument("--policy", default="Basic256Sha256", help="Basic256Sha256 | Aes128_Sha256_RsaOaep | Aes256_Sha256_RsaPss")
    p.add_argument("--trust-dir", type=Path, help="trusted server certificates")
    p.add_argument("--server-fingerprint", help="pinned SHA-256 of the server certificate")
    p.add_argument("--username", help="user name (password from --password-env)")
    p.add_argument("--password-env", default="OPCUA_PASSWORD", help="environment variable holding the password")
    p.add_argument("--state-dir", type=Path, default=Path("axedge-state"), help="where the client certificate is kept")
    p.add_argument("--timeout-secs", type=float, default=10.0, help="per-request timeout")
    return p


def _progress(msg: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{msg}", end="", file=sys.stderr, flush=True)
    else:
        print(msg, file=sys.stderr, flush=True)


async def _browse_tree(session, root_id, max_depth: int, max_nodes: int, concurrency: int, skip: set) -> Found:
    """Breadth-first browse, one batched request per slice of the frontier, bounded concurrency."""
    from asyncua import ua

    from connectors.opcua.nodes import browse_many

    root = Found(root_id, (), ua.NodeClass.Object)
    seen = {root_id}
    frontier = [root]
    total = 0
    sem = asyncio.Semaphore(max(1, concurrency))
    mask = ua.NodeClass.Object | ua.NodeClass.Variable

    async def browse_slice(part: Sequence[Found]) -> list[list[Any]]:
        async with sem:
            return await browse_many(session, [f.node_id for f in part], node_class_mask=mask, per_request=len(part))

    for depth in range(max_depth):
        if not frontier or total >= max_nodes:
            break
        slices = [frontier[i : i + 100] for i in range(0, len(frontier), 100)]
        results = await asyncio.gather(*(browse_slice(s) for s in slices))
        nxt: list[Found] = []
        for part, refs_list in zip(slices, results, strict=True):
            for parent, refs in zip(part, refs_list, strict=True):
                for ref in refs:
                    nid = ref.NodeId
                    if nid in seen or nid in skip or total >= max_nodes:
                        continue
                    if depth == 0 and root_id == ua.NodeId(ua.ObjectIds.ObjectsFolder) and nid.NamespaceIndex == 0:
                        continue  # standard infrastructure under Objects (Server, Aliases, Locations ...)
                    seen.add(nid)
                    total += 1
                    child = Found(nid, (*parent.path, ref.BrowseName.Name), int(ref.NodeClass), ref.TypeDefinition,
                                  ref.BrowseName.NamespaceIndex)
                    if child.node_class == ua.NodeClass.Variable and ref.BrowseName.Name in META_PROPERTIES:
                        continue
                    parent.children.append(child)
                    nxt.append(child)
        frontier = nxt
        _progress(f"discover: depth {depth + 1}, {total} nodes browsed")
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if total >= max_nodes:
        print(f"discover: stopped at --max-nodes {max_nodes}; narrow --root or raise the limit", file=sys.stderr)
    return root


def _walk(node: Found):
    yield node
    for c in node.children:
        yield from _walk(c)


async def discover(args: argparse.Namespace) -> dict[str, Any]:
    """Browse and build the connector section (a plain dict)."""
    import os

    from asyncua import Client, ua

    from connectors.opcua.config import IdentityConfig, OpcUaPollingConfig, SecurityConfig
    from connectors.opcua.nodes import format_node_id, parse_browse_path, read_attribute, read_metadata
    from connectors.opcua.security import configure, translate
    from edge_agent.errors import ConnectorError

    sec: dict[str, Any] = {"mode": args.security, "policy": args.policy}
    if args.trust_dir:
        sec["trust_dir"] = args.trust_dir
    if args.server_fingerprint:
        sec["server_fingerprint_sha256"] = args.server_fingerprint
    ident: dict[str, Any] = {"kind": "anonymous"}
    if args.username:
        ident = {"kind": "username", "username": args.username, "password": os.environ.get(args.password_env)}
    security, identity = SecurityConfig(**sec), IdentityConfig(**ident)
    cfg = OpcUaPollingConfig.model_construct(
        id=args.id, type="opcua_polling", endpoint=args.endpoint, security=security, identity=identity,
        request_timeout_secs=args.timeout_secs, session_timeout_secs=60.0,
    )
    client = Client(args.endpoint, timeout=args.timeout_secs)
    await configure(client, cfg, args.state_dir)
    await translate(client.connect(), args.endpoint, args.timeout_secs, "connect")
    try:
        session = client.uaclient
        nsv = await read_attribute(session, [ua.NodeId(ua.ObjectIds.Server_NamespaceArray)], ua.AttributeIds.Value)
        namespaces: list[str] = list(nsv[0].Value.Value or [])
        bp = parse_browse_path(args.root, {}, allow_index=True) if args.root.strip("/") not in ("Objects", "0:Objects") else None
        root_id = ua.NodeId(ua.ObjectIds.ObjectsFolder)
        if bp is not None:
            from types import SimpleNamespace

            from connectors.opcua.nodes import resolve_nodes

            res = await resolve_nodes(session, [SimpleNamespace(name="root", node_id=None, browse_path=args.root)], {}, True)
            if res.node_ids[0] is None:
                raise ConnectorError(f"--root {args.root!r} not found: {'; '.join(res.problems)}")
            root_id = res.node_ids[0]
        t0 = time.monotonic()
        tree = await _browse_tree(session, root_id, args.max_depth, args.max_nodes, args.concurrency,
                                  {ua.NodeId(ua.ObjectIds.Server)})
        nodes = list(_walk(tree))[1:]
        type_ids = list({n.type_def for n in nodes if n.type_def is not None and n.node_class == ua.NodeClass.Object})
        type_names = {}
        if type_ids:
            dvs = await read_attribute(session, type_ids, ua.AttributeIds.BrowseName)
            for tid, dv in zip(type_ids, dvs, strict=True):
                if dv.StatusCode.is_good() and dv.Value is not None:
                    qn = dv.Value.Value
                    type_names[tid] = (namespaces[qn.NamespaceIndex] if qn.NamespaceIndex < len(namespaces) else "", qn.Name)
        variables = [n for n in nodes if n.node_class == ua.NodeClass.Variable]
        metas = await read_metadata(session, [v.node_id for v in variables]) if variables else []
        print(f"discover: {len(nodes)} nodes, {len(variables)} variables in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        return _section(args, tree, variables, metas, type_names, namespaces, format_node_id)
    finally:
        await asyncio.wait_for(client.disconnect(), 5)


def _is_machine_tool(node: Found, type_names: dict) -> bool:
    tn = type_names.get(node.type_def)
    if tn is not None and tn[0] == NS_MT and tn[1] == "MachineToolType":
        return True
    parts = {c.path[-1] for c in node.children}
    return {"Identification", "Monitoring", "Production"} <= parts


def _semantic(v: Found, parents: dict, type_names: dict, namespaces: Sequence[str]) -> str | None:
    """``<companion spec namespace>#<TypeName>/<BrowseName>`` when the variable's object has a
    type from DI, Machinery or MachineTool (e.g. ``...MachineTool/#SpindleType/Override``)."""
    parent = parents.get(v.path)
    tn = type_names.get(parent.type_def) if parent is not None else None
    if tn is None or tn[0] not in (NS_DI, NS_MACHINERY, NS_MT):
        return None
    return f"{tn[0]}#{tn[1]}/{v.path[-1]}"


def _section(args, tree: Found, variables, metas, type_names, namespaces, fmt) -> dict[str, Any]:
    prefix = args.asset.strip("/")
    machines: dict[tuple[str, ...], str] = {}
    for n in _walk(tree):
        if n.node_class == 1 and n.path and _is_machine_tool(n, type_names):
            machines[n.path] = slug(n.path[-1])
    meta_by_path = {v.path: m for v, m in zip(variables, metas, strict=True)}
    parents = {c.path: n for n in _walk(tree) for c in n.children}
    if prefix.count("/") >= 4:
        prefix = prefix.rsplit("/", 1)[0]  # leave a level for the machine
    entries: list[dict[str, Any]] = []
    used: set[tuple[str, str]] = set()
    for v in variables:
        owner = next((p for p in machines if v.path[: len(p)] == p), None)
        if owner is not None:
            asset = f"{prefix}/{machines[owner]}"
            rel = v.path[len(owner):]
            semantic = _semantic(v, parents, type_names, namespaces) or (f"{NS_MT}#{'/'.join(rel)}" if rel[0] in UMATI_PARTS else None)
            desc = f"umati MachineTool {machines[owner]}: {'/'.join(rel)}"
        else:
            top = slug(v.path[0]) if len(v.path) > 1 else "objects"
            asset = f"{prefix}/{top}"
            rel = v.path[1:] if len(v.path) > 1 else v.path
            semantic, desc = None, "/".join(v.path)
        name = slug(".".join(rel), 128)
        k, base = 1, name
        while (asset, name) in used:
            k += 1
            name = f"{base[:120]}_{k}"
        used.add((asset, name))
        m = meta_by_path[v.path]
        e: dict[str, Any] = {"name": name, "asset": asset, "node_id": fmt(v.node_id, namespaces), "dtype": m.dtype.value}
        if m.unit:
            e["unit"] = m.unit
        if semantic:
            e["semantic_id"] = semantic
        e["description"] = f"{desc} ({m.opcua_type})"
        entries.append(e)
    section: dict[str, Any] = {"id": args.id, "type": args.ctype, "endpoint": args.endpoint, "asset": prefix}
    if args.security != "None":
        sec: dict[str, Any] = {"mode": args.security, "policy": args.policy}
        if args.trust_dir:
            sec["trust_dir"] = str(args.trust_dir)
        if args.server_fingerprint:
            sec["server_fingerprint_sha256"] = args.server_fingerprint
        section["security"] = sec
    if args.username:
        section["identity"] = {"kind": "username", "username": args.username, "password": "${env:" + args.password_env + "}"}
    section["nodes"] = entries
    section["_machines"] = sorted(machines.values())
    return section


def render(section: dict[str, Any], args: argparse.Namespace) -> str:
    machines = section.pop("_machines")
    head = (
        f"# Written by `axedge discover opcua {args.endpoint}` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.\n"
        f"# {len(section['nodes'])} variables; umati machine tools: {', '.join(machines) or 'none'}.\n"
        "# Edit freely: drop nodes you do not need, adjust assets and names, then `axedge validate`.\n"
    )
    return head + yaml.safe_dump({"connectors": [section]}, sort_keys=False, allow_unicode=True, width=200)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from edge_agent.config import load_config_text
    from edge_agent.errors import AxedgeError, ConfigError

    try:
        section = asyncio.run(discover(args))
    except AxedgeError as exc:
        print(f"\ndiscover: {exc}", file=sys.stderr)
        return 1
    if not section["nodes"]:
        print("discover: no variables found below the root", file=sys.stderr)
        return 1
    text = render(section, args)
    try:
        load_config_text(text.replace("${env:", "${env_unset:") if args.username else text, fname=str(args.out))
    except ConfigError as exc:
        print(f"discover: the generated section does not validate (please report):\n{exc}", file=sys.stderr)
        return 1
    args.out.write_text(text, encoding="utf-8")
    print(f"discover: wrote {len(section['nodes'])} nodes to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
