"""``report``: one self-contained HTML file about a curated dataset, viewable offline.

Plots are inline SVG (no script, no CDN, no external file): per asset, each signal over time
(min/max band and mean per pixel column), a gap strip (share of filled / missing / bad periods),
the distribution of observed values, the cycle durations, and the event / label timeline. The
data is read one (asset, day) file at a time into fixed-size pixel buckets, so memory does not
grow with the dataset.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataset_builder.format import DATASET_FILE, META_DIR, DatasetError

W, H = 640, 90  # plot size in px
BUCKETS = 320
BINS = 30
MAX_SIGNALS = 60  # per asset; the rest are listed, not plotted
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1,h2,h3{font-weight:600}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f4f4f4}.sig{display:inline-block;margin:6px 12px 12px 0;vertical-align:top}.sig b{font-size:13px}
svg{background:#fafafa;border:1px solid #e4e4e4}.muted{color:#777;font-size:12px}"""
_COLORS = {"filled": "#f0b429", "missing": "#d64545", "bad": "#7b2cbf"}


def _time_us(col) -> np.ndarray:
    return pc.cast(col, "int64").to_numpy(zero_copy_only=False)


def render(root: str | Path) -> str:
    """The HTML report of the curated dataset at ``root``."""
    root = Path(root)
    try:
        doc = json.loads((root / META_DIR / DATASET_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{root} has no readable {META_DIR}/{DATASET_FILE}: {exc}", path=str(root),
                           hint="build the curated dataset first (axedge dataset build)") from exc
    files = doc["files"]["curated"]
    t_col = "time"
    first = pq.read_schema(root / files[0]["path"])
    if "time" not in first.names:
        t_col = "elapsed_us"
    t0, t1 = None, None
    for f in files:
        md = pq.ParquetFile(root / f["path"]).metadata
        i = md.schema.to_arrow_schema().get_field_index(t_col)
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(i).statistics
            a, b = _to_us(st.min), _to_us(st.max)
            t0 = a if t0 is None else min(t0, a)
            t1 = b if t1 is None else max(t1, b)
    span = max(t1 - t0, 1)
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(doc['name'])}</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<h1>{e(doc['name'])}</h1><p>{e(doc['description'])}</p>",
           f"<p class='muted'>{e(str(doc['time_range']['start']))} to {e(str(doc['time_range']['end']))} &middot; "
           f"{doc['rows']} rows &middot; {len(doc['assets'])} assets &middot; {len(doc['signals'])} signals &middot; "
           f"grid {e(doc['build']['period'])}</p>"]
    out.append(_issues_table(doc))
    events = _events(root, doc)
    for a in doc["assets"]:
        part = a["partition"]
        sigs = [s for s in doc["signals"] if s["asset_partition"] == part]
        acc = _Accumulator(sigs[:MAX_SIGNALS], t0, span)
        for f in files:
            if f"/asset={part}/" in f["path"]:
                acc.add(pq.read_table(root / f["path"]), t_col)
        out.append(f"<h2>Asset {e(a.get('path') or part)}</h2>"
                   f"<p class='muted'>{a['rows']} rows, {a['cycles']} cycles, {len(a['outages'])} outages</p>")
        ev = [x for x in events if x["asset"] in (None, part)]
        if ev:
            out.append("<h3>Events and labels</h3>" + _timeline(ev, t0, span))
        if a["cycles"]:
            out.append("<h3>Cycle durations</h3>" + _cycles(root, doc, part, t0, span))
        out.append("<h3>Signals</h3><p class='muted'>grey band: min-max per pixel; line: mean; strip below: "
                   "<span style='color:#f0b429'>filled</span> / <span style='color:#d64545'>missing</span> / "
                   "<span style='color:#7b2cbf'>bad</span> share; right: distribution of observed values</p>")
        for s in sigs[:MAX_SIGNALS]:
            out.append(acc.html(s))
        if len(sigs) > MAX_SIGNALS:
            rest = ", ".join(e(s["column"]) for s in sigs[MAX_SIGNALS:])
            out.append(f"<p class='muted'>Not plotted ({len(sigs) - MAX_SIGNALS}): {rest}</p>")
    out.append("</body></html>")
    return "\n".join(out)


def write(root: str | Path, out: str | Path | None = None) -> Path:
    target = Path(out) if out else Path(root) / "report.html"
    target.write_text(render(root))
    return target


def _to_us(v: Any) -> int:
    import datetime as dt

    if isinstance(v, dt.timedelta):
        return v // dt.timedelta(microseconds=1)
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return (v - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
    return int(v)


class _Accumulator:
    """Per-signal pixel buckets (min, max, sum, count, state shares) and a histogram."""

    def __init__(self, sigs: list[dict], t0: int, span: int) -> None:
        self.t0, self.span = t0, span
        self.b: dict[str, dict[str, np.ndarray]] = {}
        for s in sigs:
            st = s["stats"]
            lo, hi = st.get("min"), st.get("max")
            edges = np.linspace(lo, hi if hi is not None and hi > lo else lo + 1, BINS + 1) if lo is not None else None
            self.b[s["column"]] = {"min": np.full(BUCKETS, np.inf), "max": np.full(BUCKETS, -np.inf),
                                   "sum": np.zeros(BUCKETS), "n": np.zeros(BUCKETS), "rows": np.zeros(BUCKETS),
                                   "st": np.zeros((4, BUCKETS)), "edges": edges,
                                   "hist": np.zeros(BINS) if edges is not None else None}

    def add(self, table, t_col: str) -> None:
        t = _time_us(table.column(t_col))
        k = np.clip((t - self.t0) * BUCKETS // (self.span + 1), 0, BUCKETS - 1)
        for col, b in self.b.items():
            if col not in table.column_names:
                continue
            state = table.column(col + "__state").to_numpy()
            b["rows"] += np.bincount(k, minlength=BUCKETS)
            for code in (1, 2, 3):
                b["st"][code] += np.bincount(k, weights=(state == code), minlength=BUCKETS)
            if b["hist"] is None:
                continue
            v = table.column(col).to_numpy(zero_copy_only=False).astype(float)
            ok = ~np.isnan(v)
            np.minimum.at(b["min"], k[ok], v[ok])
            np.maximum.at(b["max"], k[ok], v[ok])
            b["sum"] += np.bincount(k[ok], weights=v[ok], minlength=BUCKETS)
            b["n"] += np.bincount(k[ok], minlength=BUCKETS)
            obs = ok & (state == 0)
            b["hist"] += np.histogram(v[obs], bins=b["edges"])[0]

    def html(self, s: dict) -> str:
        b = self.b[s["column"]]
        unit = s.get("ucum") or s.get("unit") or ""
        title = f"<b>{html.escape(s['column'])}</b> <span class='muted'>{html.escape(unit)} &middot; {s['aggregation']}</span>"
        return (f"<div class='sig'>{title}<br>{_series(b)}<br>{_strip(b)}</div>"
                f"<div class='sig'><br>{_hist(b)}</div>")


def _series(b: dict) -> str:
    has = b["n"] > 0
    parts = [f"<svg width='{W}' height='{H}' viewBox='0 0 {W} {H}' role='img'>"]
    if has.any():
        lo, hi = float(b["min"][has].min()), float(b["max"][has].max())
        rng = hi - lo or 1.0
        y = lambda v: H - 4 - (v - lo) / rng * (H - 8)  # noqa: E731
        x = lambda i: i * W / BUCKETS  # noqa: E731
        for i in np.flatnonzero(has):
            parts.append(f"<rect x='{x(i):.1f}' y='{y(b['max'][i]):.1f}' width='{W / BUCKETS:.2f}' "
                         f"height='{max(y(b['min'][i]) - y(b['max'][i]), 0.5):.1f}' fill='#d0d7de'/>")
        mean = b["sum"] / np.maximum(b["n"], 1)
        pts = " ".join(f"{x(i) + W / BUCKETS / 2:.1f},{y(mean[i]):.1f}" for i in np.flatnonzero(has))
        parts.append(f"<polyline fill='none' stroke='#1f6feb' stroke-width='1' points='{pts}'/>")
        parts.append(f"<text x='2' y='10' font-size='10'>{hi:.4g}</text><text x='2' y='{H - 2}' font-size='10'>{lo:.4g}</text>")
    else:
        parts.append(f"<text x='{W / 2 - 40}' y='{H / 2}' font-size='12'>no numeric values</text>")
    parts.append("</svg>")
    return "".join(parts)


def _strip(b: dict) -> str:
    parts = [f"<svg width='{W}' height='12' viewBox='0 0 {W} 12'>"]
    rows = np.maximum(b["rows"], 1)
    for code, name in ((1, "filled"), (2, "missing"), (3, "bad")):
        share = b["st"][code] / rows
        for i in np.flatnonzero(share > 0):
            parts.append(f"<rect x='{i * W / BUCKETS:.1f}' y='0' width='{W / BUCKETS:.2f}' height='12' "
                         f"fill='{_COLORS[name]}' fill-opacity='{min(1.0, 0.15 + share[i]):.2f}'/>")
    parts.append("</svg>")
    return "".join(parts)


def _hist(b: dict) -> str:
    w, h = 200, H
    if b["hist"] is None or b["hist"].sum() == 0:
        return f"<svg width='{w}' height='{h}'></svg>"
    top = b["hist"].max()
    bw = w / BINS
    bars = "".join(f"<rect x='{i * bw:.1f}' y='{h - c / top * (h - 12):.1f}' width='{bw - 1:.1f}' "
                   f"height='{c / top * (h - 12):.1f}' fill='#57606a'/>" for i, c in enumerate(b["hist"]) if c)
    e = b["edges"]
    return (f"<svg width='{w}' height='{h}' viewBox='0 0 {w} {h}'>{bars}<text x='2' y='10' font-size='10'>"
            f"{e[0]:.4g} .. {e[-1]:.4g}</text></svg>")


def _events(root: Path, doc: dict) -> list[dict]:
    """Events with times in the same scale as the rows (epoch us, or elapsed us in a relative export)."""
    if not doc["files"].get("events"):
        return []
    t = pq.read_table(root / "events/events.parquet")
    starts, ends = _time_us(t.column("start")), _time_us(t.column("end"))
    return [{"start": int(a), "end": int(b), "kind": k, "asset": s}
            for a, b, k, s in zip(starts, ends, t.column("kind").to_pylist(), t.column("asset").to_pylist())]


def _timeline(events: list[dict], t0: int, span: int) -> str:
    kinds = sorted({e["kind"] for e in events})
    h = 16 * len(kinds) + 4
    parts = [f"<svg width='{W + 120}' height='{h}' viewBox='0 0 {W + 120} {h}'>"]
    for row, k in enumerate(kinds):
        parts.append(f"<text x='{W + 4}' y='{row * 16 + 13}' font-size='11'>{html.escape(k)}</text>")
        for e in events:
            if e["kind"] != k:
                continue
            x0 = (e["start"] - t0) / span * W
            x1 = (e["end"] - t0) / span * W
            parts.append(f"<rect x='{x0:.1f}' y='{row * 16 + 2}' width='{max(x1 - x0, 1.5):.1f}' height='12' "
                         f"fill='#cf222e'><title>{html.escape(k)}</title></rect>")
    parts.append("</svg>")
    return "".join(parts)


def _cycles(root: Path, doc: dict, part: str, t0: int, span: int) -> str:
    xs, ys = [], []
    for f in doc["files"].get("cycles", []):
        if f"/asset={part}/" in f["path"]:
            t = pq.read_table(root / f["path"], columns=["cycle_start", "duration_s"])
            xs.append(_time_us(t.column("cycle_start")))
            ys.append(t.column("duration_s").to_numpy(zero_copy_only=False))
    if not xs:
        return ""
    x, y = np.concatenate(xs), np.concatenate(ys)
    if x.shape[0] > 5000:  # keep the file small: an even sample
        idx = np.linspace(0, x.shape[0] - 1, 5000).astype(int)
        x, y = x[idx], y[idx]
    top = float(y.max()) or 1.0
    dots = "".join(f"<circle cx='{(a - t0) / span * W:.1f}' cy='{H - 4 - b / top * (H - 14):.1f}' r='1.5' "
                   f"fill='#8250df'/>" for a, b in zip(x.tolist(), y.tolist()))
    return (f"<svg width='{W}' height='{H}' viewBox='0 0 {W} {H}'>{dots}<text x='2' y='10' font-size='10'>"
            f"{top:.4g} s</text></svg>")


def _issues_table(doc: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in doc["issues"].items())
    return f"<h2>Input issues handled</h2><table>{rows}</table>"
