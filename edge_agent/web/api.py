"""The JSON the status page polls (``GET /api/status``): built from the running agent's metrics,
catalog, sink buffers, the :class:`~edge_agent.web.tap.LastValues` tap and ``agent.events``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dataset_builder.format import Quality
from edge_agent import __version__

if TYPE_CHECKING:
    from edge_agent.runtime.agent import Agent
    from edge_agent.web.tap import LastValues

_QUALITY_NAMES = {int(q): q.name.lower() for q in Quality}
_SEVERITY = ("good", "uncertain", "bad", "bad")


def quality_label(code: int) -> tuple[str, str]:
    """(severity, name) of an OPC UA StatusCode: ('good', 'good'), ('bad', 'bad_timeout'), ..."""
    sev = _SEVERITY[(code >> 30) & 0b11]
    return sev, _QUALITY_NAMES.get(code, _QUALITY_NAMES.get(code & 0xFFFF0000, f"0x{code:08x}"))


def _connectors(agent: Agent) -> list[dict[str, Any]]:
    m = agent.metrics
    units: dict[str, dict[str, str]] = {}
    for rc in agent.running:
        cid = rc.unit.ctx.connector_id
        units.setdefault(cid, {})[rc.name] = rc.state
    out = []
    for cid, cm in m.connectors.items():
        st = units.get(cid, {})
        states = set(st.values())
        overall = ("failing" if "failing" in states else "starting" if "starting" in states
                   else "connected" if "connected" in states else "stopped" if states else "unknown")
        out.append({
            "id": cid,
            "state": overall,
            "units": st,
            "received": cm.received,
            "errors": dict(cm.errors),
            "errors_total": sum(cm.errors.values()),
            "dropped": sum(cm.dropped.values()),
            "quarantined": sum(cm.quarantined.values()),
            "gaps": cm.gaps,
        })
    return out


def _sinks(agent: Agent) -> list[dict[str, Any]]:
    out = []
    for sr in agent.sink_runners:
        sm = agent.metrics.sinks.get(sr.sink_id)
        buf = sr.buffer
        out.append({
            "id": sr.sink_id,
            "state": sr.state,
            "committed": sm.committed_rows if sm else 0,
            "files": sm.committed_files if sm else 0,
            "errors_total": sum(sm.errors.values()) if sm else 0,
            "dropped": sum(sm.dropped.values()) if sm else 0,
            "buffer": {"rows": buf.rows, "bytes": buf.nbytes, "max_bytes": buf.max_bytes,
                       "fill": round(buf.nbytes / buf.max_bytes, 4) if buf.max_bytes else 0.0},
        })
    return out


def _processors(agent: Agent) -> list[dict[str, Any]]:
    out = []
    for p in getattr(agent, "processors", ()):
        st = p.stats()
        out.append({"id": p.config.id, "asset": p.config.asset, "state": st["state"], "last_error": st["last_error"],
                    "windows_scored": st["windows_scored"], "anomalous_windows": st["anomalous_windows"],
                    "events": st["events"], "latency_ms_p50": round(st["latency_us"].get("p50", 0) / 1000, 2)
                    if st["latency_us"] else None})
    return out


def _signals(agent: Agent, tap: LastValues, query: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    q = query.lower()
    rows, total = [], 0
    for sig in agent.catalog.snapshot():
        if q and q not in sig.key.lower():
            continue
        total += 1
        if len(rows) >= limit:
            continue
        sp = sig.spec
        row = {"id": sig.id, "key": sig.key, "asset": sp.asset, "name": sp.name, "unit": sp.unit,
               "dtype": sp.dtype.value, "connector": sp.connector}
        snap = tap.snapshot(sig.id)
        if snap is None:
            row.update(value=None, text=None, quality=None, severity="none", quality_name="no data",
                       time_ns=None, count=0, history=[])
        else:
            sev, name = quality_label(snap["quality"])
            row.update(snap, severity=sev, quality_name=name)
        rows.append(row)
    return rows, total


def status(agent: Agent, tap: LastValues, *, query: str = "", limit: int = 200) -> dict[str, Any]:
    """Everything the page shows, in one JSON document."""
    h = agent.health()
    signals, total = _signals(agent, tap, query, limit)
    events = list(getattr(agent, "events", ()) or ())[-100:]
    return {
        "agent": {"id": agent.config.agent.id, "version": __version__, "status": h["status"],
                  "uptime_secs": h["uptime_secs"], "received": h["received"], "committed": h["committed"],
                  "dropped": h["dropped"], "errors": h["errors"], "now_ms": int(time.time() * 1000)},
        "connectors": _connectors(agent),
        "sinks": _sinks(agent),
        "processors": _processors(agent),
        "signals": signals,
        "signals_total": total,
        "events": events,
    }
