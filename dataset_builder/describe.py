"""``axedge dataset describe``: what a dataset holds and whether it is consistent.

:func:`describe` reads the manifest, the catalog and the ``time``/``signal``/``quality`` columns
of the raw layer, one asset partition at a time (a signal lives in exactly one asset, so memory is
bounded by the largest asset). It never modifies the dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from dataset_builder import catalog as catalog_mod
from dataset_builder.format import (
    DATASET_FILE,
    MANIFEST_FILE,
    META_DIR,
    QUARANTINE_DIR,
    RAW_DIR,
    STAGING_DIR,
    DatasetError,
)
from dataset_builder.manifest import iso_us, read_manifest, sha256_file

#: a time gap is an interval longer than this many times the signal's median interval
GAP_FACTOR = 3.0
MAX_GAPS_LISTED = 50


def describe(root: str | Path, *, verify: bool = False) -> dict[str, Any]:
    """Summary of the dataset at ``root``: files, rows, bytes, time range, quality, signals with
    row counts, gaps (bad-quality runs and time gaps > 3x the signal's median interval) and a
    manifest consistency check (``verify=True`` also recomputes every file's sha256)."""
    root = Path(root)
    raw = root / RAW_DIR
    if not (root / META_DIR / DATASET_FILE).exists() and not raw.is_dir():
        raise DatasetError(f"{root} is not an axedge dataset (no {META_DIR}/{DATASET_FILE}, no {RAW_DIR}/)",
                           path=str(root), hint="point at the directory that holds raw/ and _axedge/")
    try:
        meta = json.loads((root / META_DIR / DATASET_FILE).read_text())
    except FileNotFoundError:
        meta = {}
    state = read_manifest(root / META_DIR / MANIFEST_FILE)
    listed = {f["path"]: f for e in state.entries for f in e["files"]}
    present = {p.relative_to(root).as_posix(): p for p in raw.rglob("*.parquet")} if raw.is_dir() else {}
    missing = sorted(set(listed) - set(present))
    unlisted = sorted(set(present) - set(listed))
    mismatched = sorted(p for p in listed if p in present and sha256_file(present[p]) != listed[p]["sha256"]) if verify else []
    manifest = {
        "commits": len(state.entries),
        "files": len(listed),
        "missing": missing,
        "unlisted": unlisted,
        "checksum_mismatch": mismatched,
        "verified": verify,
        "torn_tail": state.torn_tail is not None,
        "ok": not (missing or unlisted or mismatched),
    }
    buffers: dict[str, list[int]] = {}
    for e in state.entries:
        for b, (first, last) in e["buffers"].items():
            lo, hi = buffers.get(b, [first, last])
            buffers[b] = [min(lo, first), max(hi, last)]

    catalog = {r["key"]: r for r in catalog_mod.load(root)}
    signals: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    totals = {"good": 0, "uncertain": 0, "bad": 0}
    tmin, tmax = None, None
    n_time_gaps = n_bad_runs = 0
    for asset_dir in sorted(raw.glob("asset=*")) if raw.is_dir() else []:
        stats = _scan_asset(asset_dir)
        if stats is None:
            continue
        for s in stats["signals"]:
            c = catalog.get(s["key"], {})
            s.update(unit=c.get("unit"), dtype=c.get("dtype"), asset=c.get("asset", asset_dir.name[6:]))
            signals.append(s)
            for q in totals:
                totals[q] += s[q]
        gaps.extend(stats["gaps"])
        n_time_gaps += stats["time_gaps"]
        n_bad_runs += stats["bad_runs"]
        tmin = stats["time_min"] if tmin is None else min(tmin, stats["time_min"])
        tmax = stats["time_max"] if tmax is None else max(tmax, stats["time_max"])
    gaps.sort(key=lambda g: -g["duration_secs"])
    staging = root / STAGING_DIR
    quarantine = root / QUARANTINE_DIR
    return {
        "root": str(root),
        "format": {k: meta.get(k) for k in ("format", "format_version", "created", "provenance")},
        "files": len(present),
        "rows": sum(totals.values()),
        "bytes": sum(p.stat().st_size for p in present.values()),
        "time_min": None if tmin is None else iso_us(tmin),
        "time_max": None if tmax is None else iso_us(tmax),
        "quality": totals,
        "signals": sorted(signals, key=lambda s: s["key"]),
        "gap_count": {"time_gaps": n_time_gaps, "bad_quality_runs": n_bad_runs},
        "gaps": gaps[:MAX_GAPS_LISTED],
        "buffers": buffers,
        "manifest": manifest,
        "staged_files": len(list(staging.iterdir())) if staging.is_dir() else 0,
        "quarantined_files": len(list(quarantine.iterdir())) if quarantine.is_dir() else 0,
    }


def _scan_asset(asset_dir: Path) -> dict[str, Any] | None:
    try:
        t = ds.dataset(asset_dir, format="parquet", ignore_prefixes=[".", "_"]).to_table(
            columns=["time", "signal", "quality"])
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"cannot read the files under {asset_dir}: {exc}", path=str(asset_dir),
                           hint="describe --verify names files whose checksum no longer matches") from exc
    if t.num_rows == 0:
        return None
    t = t.unify_dictionaries()
    sig = t["signal"].combine_chunks()
    if isinstance(sig, pa.ChunkedArray):  # pyarrow versions differ on dictionary combine
        sig = sig.chunk(0)
    keys = sig.dictionary.to_pylist()
    codes = sig.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    tm = pc.cast(t["time"], pa.int64()).to_numpy()
    sev = (t["quality"].to_numpy() >> 30).astype(np.int8)  # 0 good, 1 uncertain, 2-3 bad
    order = np.lexsort((tm, codes))
    codes, tm, sev = codes[order], tm[order], sev[order]
    counts = np.bincount(codes, minlength=len(keys))
    starts = np.concatenate([[0], np.cumsum(counts)])
    out: dict[str, Any] = {"signals": [], "gaps": [], "time_gaps": 0, "bad_runs": 0,
                           "time_min": int(tm.min()), "time_max": int(tm.max())}
    for k, key in enumerate(keys):
        s, e = int(starts[k]), int(starts[k + 1])
        if s == e:
            continue
        st, sv = tm[s:e], sev[s:e]
        bad = sv >= 2
        dt = np.diff(st)
        pos = dt[dt > 0]
        med = float(np.median(pos)) if pos.size else None
        n_gaps = 0
        if med:
            idx = np.flatnonzero(dt > GAP_FACTOR * med)
            n_gaps = int(idx.size)
            for i in idx[np.argsort(-dt[idx])][:MAX_GAPS_LISTED]:
                out["gaps"].append(_gap(key, "time_gap", int(st[i]), int(st[i + 1]), 0))
        # runs of bad-quality rows
        edges = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
        run_s, run_e = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for a, b in zip(run_s[:MAX_GAPS_LISTED], run_e[:MAX_GAPS_LISTED]):
            out["gaps"].append(_gap(key, "bad_quality", int(st[a]), int(st[b - 1]), int(b - a)))
        out["time_gaps"] += n_gaps
        out["bad_runs"] += int(run_s.size)
        out["signals"].append({
            "key": key,
            "rows": e - s,
            "good": int(np.count_nonzero(sv == 0)),
            "uncertain": int(np.count_nonzero(sv == 1)),
            "bad": int(np.count_nonzero(bad)),
            "time_min": iso_us(int(st[0])),
            "time_max": iso_us(int(st[-1])),
            "median_interval_secs": None if med is None else med / 1e6,
            "time_gaps": n_gaps,
        })
    return out


def _gap(key: str, kind: str, start_us: int, end_us: int, rows: int) -> dict[str, Any]:
    return {"signal": key, "kind": kind, "start": iso_us(start_us), "end": iso_us(end_us),
            "duration_secs": (end_us - start_us) / 1e6, "rows": rows}


def format_describe(d: dict[str, Any], *, max_signals: int = 40, max_gaps: int = 15) -> str:
    """A readable report of :func:`describe`'s result."""
    f = d["format"]
    prov = f.get("provenance") or {}
    lines = [
        f"dataset   {d['root']}  ({f.get('format') or '?'} v{f.get('format_version') or '?'}, "
        f"created {f.get('created') or '?'}"
        + (f", gateway {prov['gateway']}" if prov.get("gateway") else "") + ")",
        f"files     {d['files']:,}   rows {d['rows']:,}   size {_size(d['bytes'])}   "
        f"commits {d['manifest']['commits']:,}",
        f"time      {d['time_min'] or '-'}  ..  {d['time_max'] or '-'}",
    ]
    q, rows = d["quality"], max(d["rows"], 1)
    lines.append(f"quality   good {q['good']:,} ({100 * q['good'] / rows:.1f}%)   uncertain {q['uncertain']:,}   "
                 f"bad {q['bad']:,} ({100 * q['bad'] / rows:.1f}%)")
    m = d["manifest"]
    if m["ok"]:
        check = "sha256 verified" if m["verified"] else "sha256 not verified (--verify)"
        lines.append(f"manifest  OK: all {m['files']:,} committed files present, no others; {check}")
    else:
        lines.append("manifest  PROBLEM:")
        for label, key in (("missing", "missing"), ("not in manifest", "unlisted"), ("checksum mismatch", "checksum_mismatch")):
            for p in m[key][:10]:
                lines.append(f"  {label}: {p}")
            if len(m[key]) > 10:
                lines.append(f"  ... {len(m[key]) - 10} more {label}")
    if m["torn_tail"]:
        lines.append("manifest  last line torn (crash during a commit); the writer repairs it at its next start")
    if d["staged_files"] or d["quarantined_files"]:
        lines.append(f"staging   {d['staged_files']} staged (uncommitted), {d['quarantined_files']} quarantined (never read)")
    sigs = d["signals"]
    lines.append("")
    lines.append(f"signals ({len(sigs)})")
    header = ("SIGNAL", "UNIT", "ROWS", "BAD", "MEDIAN DT", "GAPS", "FIRST", "LAST")
    table = [header] + [
        (s["key"], s.get("unit") or "", f"{s['rows']:,}", f"{s['bad']:,}",
         "-" if s["median_interval_secs"] is None else f"{s['median_interval_secs']:.3g}s",
         str(s["time_gaps"]), s["time_min"][:19], s["time_max"][:19])
        for s in sigs[:max_signals]
    ]
    lines.extend(_table(table))
    if len(sigs) > max_signals:
        lines.append(f"  ... {len(sigs) - max_signals} more signals (--json for all)")
    gc = d["gap_count"]
    lines.append("")
    lines.append(f"gaps: {gc['time_gaps']:,} time gaps (> {GAP_FACTOR:g}x median interval), "
                 f"{gc['bad_quality_runs']:,} bad-quality runs")
    if d["gaps"]:
        rows_ = [("SIGNAL", "KIND", "START", "END", "DURATION", "ROWS")] + [
            (g["signal"], g["kind"], g["start"][:23], g["end"][:23], f"{g['duration_secs']:.3g}s",
             str(g["rows"]) if g["rows"] else "")
            for g in d["gaps"][:max_gaps]
        ]
        lines.extend(_table(rows_))
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
