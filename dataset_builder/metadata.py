"""Curated dataset metadata: ``_axedge/dataset.json`` (+ ``signals.json``), Croissant, dataset card.

``dataset.json`` is the one machine-readable description of a curated dataset: every signal
with its column, unit (as given, UCUM and UNECE codes), data type, asset, source address,
semantic id, aggregation and statistics; the assets with their outages (periods where no signal
had a value); the build parameters and splits; provenance (the raw dataset's producers: gateway,
axedge version, config hash; the raw files read with their checksums; the files written with
theirs). ``croissant.json`` and ``README.md`` are derived from it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from dataset_builder import stats as stats_mod
from dataset_builder import units
from dataset_builder.format import DATASET_FILE, FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE, META_DIR
from dataset_builder.labels import iso

CROISSANT_FILE = "croissant.json"
CARD_FILE = "README.md"
SIGNALS_FILE = "signals.json"


def axedge_version() -> str:
    try:
        return importlib_metadata.version("axedge")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def source_provenance(raw_root: Path, used_files: set[str] | None = None) -> dict[str, Any]:
    """What produced the raw dataset: its dataset.json, the distinct producers in its manifest,
    and the committed files read (path, rows, sha256)."""
    from dataset_builder.manifest import read_manifest

    try:
        raw_doc = json.loads((raw_root / META_DIR / DATASET_FILE).read_text())
    except (OSError, ValueError):
        raw_doc = {}
    producers: dict[str, dict] = {}
    files = []
    for e in read_manifest(raw_root / META_DIR / MANIFEST_FILE).entries:
        prov = e.get("provenance") or {}
        producers[json.dumps(prov, sort_keys=True)] = prov
        for f in e["files"]:
            if used_files is None or f"{f['asset']}/{f['date']}" in used_files:
                files.append({"path": f["path"], "rows": f["rows"], "sha256": f["sha256"]})
    return {"created": raw_doc.get("created"), "format_version": raw_doc.get("format_version"),
            "producers": list(producers.values()), "files": files}


def signal_entries(catalog_rows: list[dict], plans: dict[str, list], merged: dict[str, dict],
                   period: str) -> list[dict[str, Any]]:
    by_key = {r["key"]: r for r in catalog_rows}
    out = []
    for part, sigs in sorted(plans.items()):
        for s in sigs:
            if s.key not in merged:
                continue
            r = by_key[s.key]
            extra = r.get("extra") or {}
            if isinstance(extra, str):
                extra = json.loads(extra or "{}")
            out.append({
                "key": s.key, "name": s.name, "column": s.column, "asset": r["asset"], "asset_partition": part,
                **units.describe(r.get("unit")), "dtype": r.get("dtype"), "aggregation": s.agg,
                "sampling": {"period": period, "raw_interval_s": merged[s.key].get("raw_interval_s")}, "address": r.get("address"), "connector": r.get("connector"),
                "semantic_id": r.get("semantic_id"), "description": r.get("description"),
                "eclass": extra.get("eclass"), "stats": merged[s.key],
            })
    return out


def write_all(raw_root: Path, out: Path, catalog_rows: list[dict], plans: dict[str, list],
              summaries: list[dict], build_params: dict, *, description: str | None, license: str,
              unknown_rows: int = 0) -> dict:
    """Merge the partition summaries and write dataset.json, signals.json, croissant.json, README.md.

    ``unknown_rows``: raw rows of signals missing from the catalog (left out of the build)."""
    from dataset_builder import card, croissant

    per_signal: dict[str, list[dict]] = {}
    issues = {"unknown_signal_rows": unknown_rows}
    assets: dict[str, dict] = {}
    for s in summaries:
        issues["unknown_signal_rows"] += s["issues"]["unknown_signal_rows"]
        a = assets.setdefault(s["asset"], {"partition": s["asset"], "rows": 0, "cycles": 0, "outages": [],
                                           "dates": []})
        a["rows"] += s["rows"]
        a["cycles"] += s.get("cycles", 0)
        a["outages"] += s["outages"]
        a["dates"].append(s["date"])
        for k, p in s["signals"].items():
            per_signal.setdefault(k, []).append(p)
    merged = {k: _iso_times(stats_mod.merge(v)) for k, v in per_signal.items()}
    for k in stats_mod.COUNTS[:7]:
        issues[k] = sum(m[k] for m in merged.values())
    signals = signal_entries(catalog_rows, plans, merged, build_params["period"])
    asset_path = {r["asset_partition"]: r["asset"] for r in catalog_rows}
    for a in assets.values():
        a["path"] = asset_path.get(a["partition"])
        a["columns"] = [s["column"] for s in signals if s["asset_partition"] == a["partition"]]
    used = {f"{s['asset']}/{s['date']}" for s in summaries}
    files = {"curated": [s["file"] for s in summaries],
             "cycles": [s["cycles_file"] for s in summaries if "cycles_file" in s]}
    events_file = out / "events" / "events.parquet"
    if events_file.exists():
        from dataset_builder.manifest import sha256_file

        files["events"] = [{"path": "events/events.parquet", "bytes": events_file.stat().st_size,
                            "sha256": sha256_file(events_file)}]
    name = out.resolve().name
    doc = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "layer": "curated",
        "name": name,
        "description": description or f"Curated axedge dataset {name}: {len(signals)} signals of {len(assets)} "
                                      f"assets on a {build_params['period']} grid.",
        "license": license,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "time_range": {"start": min(s["time_min"] for s in summaries), "end": max(s["time_max"] for s in summaries)},
        "rows": sum(s["rows"] for s in summaries),
        "build": build_params,
        "states": {"0": "observed", "1": "filled", "2": "missing", "3": "bad"},
        "issues": issues,
        "assets": sorted(assets.values(), key=lambda a: a["partition"]),
        "signals": signals,
        "files": files,
        "provenance": {
            "builder": {"axedge_version": axedge_version(), "python": platform.python_version()},
            "source": source_provenance(raw_root, used),
        },
    }
    meta = out / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    _dump(meta / DATASET_FILE, doc)
    _dump(meta / SIGNALS_FILE, {"signals": signals})
    _dump(out / CROISSANT_FILE, croissant.from_metadata(doc, out))
    _atomic_text(out / CARD_FILE, card.render(doc))
    return doc


def _iso_times(m: dict) -> dict:
    for k in ("time_min", "time_max"):
        if m.get(k) is not None:
            m[k] = iso(m[k])
    return m


def _dump(path: Path, doc: Any) -> None:
    _atomic_text(path, json.dumps(doc, indent=1, sort_keys=False, default=str) + "\n")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(root: str | Path) -> dict[str, Any]:
    """The metadata of a curated dataset."""
    return json.loads((Path(root) / META_DIR / DATASET_FILE).read_text())
