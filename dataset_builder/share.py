"""``export``: a curated dataset under a sharing policy, without leaking know-how.

Policy file (YAML)::

    key: ${env:AXEDGE_SHARE_KEY}     # or ${file:/run/secrets/share_key}; needed to pseudonymise
    default: keep                    # keep | drop: signals no rule matches
    signals:                         # first matching rule wins; globs on the signal name or key
      - {match: "recipe_*", drop: true}
      - {match: "spindle_*", pseudonymise: true, quantise: 10}
      - {match: "force", noise: 0.05}          # Gaussian noise, absolute standard deviation
    assets: pseudonymise             # keep | pseudonymise: every site/area/line/asset name
    time: relative                   # absolute | relative: int64 microseconds since the dataset start
                                     # (the row time column becomes ``elapsed_us``; partitions day-NNNN)
    events: keep                     # keep | drop: the label column and the events table

What the export holds: the kept columns (renamed, quantised, noised as asked) of the curated
rows and cycles, the events (asset and signal names mapped, dropped signals removed), and fresh
metadata (dataset.json, croissant.json, README.md) computed from the exported data. It never
holds: dropped signals (values, states, cycle features, names anywhere), original names of
pseudonymised signals and assets (not in columns, files, directories, Parquet metadata or
dictionaries), the source's addresses, descriptions, provenance or file paths, or the key.
Pseudonyms are HMAC-SHA256(key, name): stable across exports with the same key, so shared
datasets can be joined, and not reversible without it. The metadata records the policy's
fingerprint (SHA-256 of the policy without the key) and a summary of the actions, not the
patterns (they may name dropped signals).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import hmac
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dataset_builder.format import DATASET_FILE, FORMAT_NAME, FORMAT_VERSION, META_DIR, DatasetError

#: columns of the curated and cycle tables that belong to no signal
_PLAIN = {"time", "label", "split", "cycle_start", "cycle_end", "duration_s", "rows", "value", "complete"}
_SUFFIXES = ("", "__state", "__mean", "__min", "__max", "__std")
_REF = re.compile(r"^\$\{(env|file):([^}]+)\}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    match: str = Field(description="Glob on the signal name or key")
    drop: bool = False
    pseudonymise: bool = False
    quantise: float | None = Field(None, gt=0, description="Round values to multiples of this step")
    noise: float | None = Field(None, gt=0, description="Add Gaussian noise with this standard deviation")


class Policy(_Strict):
    key: str | None = Field(None, description="Pseudonymisation key, ${env:VAR} or ${file:path}")
    default: Literal["keep", "drop"] = "keep"
    signals: list[Rule] = Field(default_factory=list)
    assets: Literal["keep", "pseudonymise"] = "pseudonymise"
    time: Literal["absolute", "relative"] = "absolute"
    events: Literal["keep", "drop"] = "keep"
    description: str | None = None
    license: str | None = None

    def fingerprint(self) -> str:
        doc = self.model_dump(exclude={"key"})
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def rule_for(self, name: str, key: str) -> Rule | None:
        for r in self.signals:
            if fnmatch.fnmatchcase(name, r.match) or fnmatch.fnmatchcase(key, r.match):
                return r
        return None


def load_policy(path: str | Path) -> Policy:
    p = Path(path)
    try:
        return Policy.model_validate(yaml.safe_load(p.read_text()) or {})
    except OSError as exc:
        raise DatasetError(f"cannot read policy {p}: {exc.strerror}", path=str(p)) from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise DatasetError(f"{p}: invalid sharing policy: {exc}", path=str(p)) from exc


def _resolve_key(ref: str | None) -> bytes | None:
    if ref is None:
        return None
    m = _REF.match(ref.strip())
    if m is None:
        value = ref
    elif m.group(1) == "env":
        value = os.environ.get(m.group(2))
        if value is None:
            raise DatasetError(f"sharing key: environment variable {m.group(2)} is not set")
    else:
        try:
            value = Path(m.group(2)).read_text().strip()
        except OSError as exc:
            raise DatasetError(f"sharing key: cannot read {m.group(2)}: {exc.strerror}") from exc
    if len(value) < 16:
        raise DatasetError("sharing key is shorter than 16 characters", hint="use a long random key")
    return value.encode()


class _Namer:
    def __init__(self, key: bytes | None) -> None:
        self.key = key

    def _h(self, kind: str, name: str) -> str:
        if self.key is None:
            raise DatasetError("the policy pseudonymises names but has no key", hint="set key: ${env:AXEDGE_SHARE_KEY}")
        return hmac.new(self.key, f"{kind}:{name}".encode(), hashlib.sha256).hexdigest()[:10]

    def signal(self, name: str) -> str:
        return f"sig_{self._h('signal', name)}"

    def asset(self, path: str) -> str:
        return "/".join(f"n_{self._h('node', '/'.join(path.split('/')[: i + 1]))}" for i in range(len(path.split("/"))))

    def seed(self, *parts: str) -> int:
        material = self.key or b"axedge-no-key"
        return int.from_bytes(hmac.new(material, ":".join(parts).encode(), hashlib.sha256).digest()[:8], "little")


def export(src: str | Path, policy: Policy | str | Path, dst: str | Path, *, compression: str = "zstd") -> dict[str, Any]:
    """Export the curated dataset ``src`` to ``dst`` under ``policy``; return the new metadata."""
    from dataset_builder import card, croissant
    from dataset_builder import stats as stats_mod
    from dataset_builder.format import asset_partition_value
    from dataset_builder.labels import iso
    from dataset_builder.metadata import CARD_FILE, CROISSANT_FILE, _atomic_text, _dump, axedge_version

    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    src, dst = Path(src), Path(dst)
    try:
        doc = json.loads((src / META_DIR / DATASET_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{src} is not a curated axedge dataset: {exc}", path=str(src)) from exc
    if doc.get("layer") != "curated":
        raise DatasetError(f"{src} is not a curated dataset (layer {doc.get('layer')})", path=str(src),
                           hint="build it first: axedge dataset build RAW --out DIR")
    if dst.exists() and any(dst.iterdir()):
        raise DatasetError(f"{dst} exists and is not empty", path=str(dst))
    namer = _Namer(_resolve_key(pol.key))
    t0 = _parse_iso(doc["time_range"]["start"])
    rel = pol.time == "relative"
    day_us = 86_400_000_000

    def when(text_or_us: str | int) -> str:
        us = _parse_iso(text_or_us) if isinstance(text_or_us, str) else int(text_or_us)
        return f"+{(us - t0) / 1e6:g}s" if rel else iso(us)

    # per signal: output column name and transform (None = dropped)
    plan: dict[tuple[str, str], dict | None] = {}
    asset_map: dict[str, tuple[str, str]] = {}  # partition -> (new path, new partition)
    for a in doc["assets"]:
        path = a.get("path") or a["partition"].replace(".", "/")
        new = namer.asset(path) if pol.assets == "pseudonymise" else path
        asset_map[a["partition"]] = (new, asset_partition_value(new))
    for s in doc["signals"]:
        rule = pol.rule_for(s["name"], s["key"])
        if (rule is not None and rule.drop) or (rule is None and pol.default == "drop"):
            plan[(s["asset_partition"], s["column"])] = None
            continue
        plan[(s["asset_partition"], s["column"])] = {
            "column": namer.signal(s["name"]) if rule is not None and rule.pseudonymise else s["column"],
            "quantise": rule.quantise if rule else None, "noise": rule.noise if rule else None, "sig": s}
    # every column a signal owns -> (plan, signal column, suffix); columns are matched exactly
    signal_columns = {(part, column + suf): (p_, column, suf) for (part, column), p_ in plan.items()
                      for suf in _SUFFIXES}
    cyc_sig = (doc["build"].get("cycles") or {}).get("signal")

    def cycle_kept(part: str) -> bool:
        """The cycle table's ``value`` column is the cycle signal's value: kept with that signal."""
        return any(v is not None and a_ == part and cyc_sig in (v["sig"]["name"], v["sig"]["key"])
                   for (a_, _c), v in plan.items())

    key_map = {s["key"]: (plan[(s["asset_partition"], s["column"])], s["asset_partition"]) for s in doc["signals"]}

    def transform(col: pa.Array, p: dict, seed_parts: tuple[str, ...]) -> pa.Array:
        if not (pa.types.is_floating(col.type) and (p["quantise"] or p["noise"])):
            return col
        v = col.to_numpy(zero_copy_only=False).astype(np.float64)
        if p["noise"]:
            v = v + np.random.default_rng(namer.seed(*seed_parts)).normal(0.0, p["noise"], v.shape[0])
        if p["quantise"]:
            v = np.round(v / p["quantise"]) * p["quantise"]
        return pa.array(v, pa.float64(), mask=np.isnan(v))

    def shift_time(col: pa.Array) -> pa.Array:
        if not rel:
            return col
        us = pc.cast(col, pa.int64())
        return pc.subtract(us, pa.scalar(t0, pa.int64()))

    dst.mkdir(parents=True, exist_ok=True)
    out_files: dict[str, list[dict]] = {"curated": [], "cycles": []}
    parts_stats: dict[tuple[str, str], list[dict]] = {}
    new_assets: dict[str, dict] = {}
    for layer in ("curated", "cycles"):
        for f in doc["files"].get(layer, []):
            part = f["path"].split("/asset=", 1)[1].split("/", 1)[0]
            date = f["path"].split("/date=", 1)[1].split("/", 1)[0]
            table = pq.read_table(src / f["path"])
            cols: dict[str, pa.Array] = {}
            for name in table.column_names:
                col = table.column(name).combine_chunks()
                hit = signal_columns.get((part, name))
                if hit is None:
                    if name not in _PLAIN or (name == "label" and pol.events == "drop"):
                        continue  # fail closed: a column the policy does not know is left out
                    if name in ("time", "cycle_start", "cycle_end"):
                        cols["elapsed_us" if rel and name == "time" else name] = shift_time(col)
                    elif name != "value" or layer != "cycles" or cycle_kept(part):
                        cols[name] = col
                    continue
                p_, base, suffix = hit
                if p_ is None:
                    continue
                if suffix in ("", "__mean", "__min", "__max"):
                    col = transform(col, p_, (p_["sig"]["key"], layer, date, suffix))
                elif suffix == "__std" and p_["quantise"]:
                    col = transform(col, {"quantise": p_["quantise"], "noise": None}, ())
                cols[p_["column"] + suffix] = col
                if layer == "curated" and suffix == "":
                    state = table.column(name + "__state").to_numpy()
                    vals = None if not pa.types.is_floating(col.type) else col.to_numpy(zero_copy_only=False)
                    parts_stats.setdefault((part, base), []).append(stats_mod.partial(vals, state))
            new_path, new_part = asset_map[part]
            new_date = f"day-{(_parse_iso(date + 'T00:00:00Z') - t0 // day_us * day_us) // day_us:04d}" if rel else date
            rel_path = f"{layer}/asset={new_part}/date={new_date}/part-0.parquet"
            out = pa.table(cols).replace_schema_metadata({b"axedge.format": f"{FORMAT_NAME}/{FORMAT_VERSION}".encode(),
                                                          b"axedge.layer": layer.encode()})
            target = dst / rel_path
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(out, target, compression=None if compression == "none" else compression,
                           use_dictionary=[c for c in ("label", "split", "value") if c in out.column_names] or False)
            out_files[layer].append({"path": rel_path, "rows": out.num_rows, "bytes": target.stat().st_size,
                                     "sha256": _sha256(target)})
            a = new_assets.setdefault(new_part, {"partition": new_part, "path": new_path, "rows": 0, "cycles": 0,
                                                 "dates": [], "outages": []})
            if layer == "curated":
                a["rows"] += out.num_rows
                a["dates"].append(new_date)
            else:
                a["cycles"] += out.num_rows

    if pol.events == "keep" and doc["files"].get("events"):
        ev = pq.read_table(src / "events/events.parquet").to_pylist()
        rows = []
        for e in ev:
            sigs = []
            for k in e["signals"] or []:
                pk = key_map.get(k)
                if pk is None or pk[0] is None:
                    continue
                sigs.append(f"{asset_map[pk[1]][0]}/{pk[0]['column']}")
            if e["signals"] and not sigs:
                continue  # the event only concerned dropped signals
            rows.append({"start": e["start"], "end": e["end"], "kind": e["kind"], "source": e["source"],
                         "asset": asset_map[e["asset"]][1] if e["asset"] in asset_map else None, "signals": sigs})
        from dataset_builder.labels import EVENTS_SCHEMA

        et = pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)
        if rel:
            for i, name in enumerate(("start", "end")):
                et = et.set_column(i, name, shift_time(et.column(name).combine_chunks()))
        et = et.replace_schema_metadata({b"axedge.layer": b"events"})
        (dst / "events").mkdir(exist_ok=True)
        pq.write_table(et, dst / "events/events.parquet", compression=None if compression == "none" else compression)
        out_files["events"] = [{"path": "events/events.parquet", "bytes": (dst / "events/events.parquet").stat().st_size,
                                "sha256": _sha256(dst / "events/events.parquet")}]

    for a in doc["assets"]:
        new_assets[asset_map[a["partition"]][1]]["outages"] = [
            {"start": when(o["start"]), "end": when(o["end"]), "rows": o["rows"]} for o in a["outages"]]
    signals = []
    for (part, _base), p_ in plan.items():
        if p_ is None:
            continue
        s = p_["sig"]
        new_path, new_part = asset_map[part]
        st = stats_mod.merge(parts_stats.get((part, _base), []))
        st.update({k: s["stats"].get(k) for k in ("raw_rows", "used_rows", "duplicate_rows", "conflicting_rows",
                                                   "out_of_order_rows", "bad_quality_rows", "text_in_numeric_rows")})
        st["time_min"] = when(s["stats"]["time_min"]) if s["stats"].get("time_min") else None
        st["time_max"] = when(s["stats"]["time_max"]) if s["stats"].get("time_max") else None
        signals.append({"key": f"{new_path}/{p_['column']}", "name": p_["column"], "column": p_["column"],
                        "asset": new_path, "asset_partition": new_part, "unit": s.get("unit"), "ucum": s.get("ucum"),
                        "unece": s.get("unece"), "dtype": s.get("dtype"), "aggregation": s["aggregation"],
                        "sampling": s["sampling"], "semantic_id": s.get("semantic_id"),
                        "transform": {"quantise": p_["quantise"], "noise_sigma": p_["noise"]}, "stats": st})
    build = doc["build"]
    cyc = build.get("cycles")
    cyc_plan = next((v for v in plan.values() if v and cyc and cyc["signal"] in (v["sig"]["name"], v["sig"]["key"])),
                    None)
    new_doc = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "layer": "curated",
        "name": dst.name,
        "description": pol.description or f"Shared extract of a curated axedge dataset ({len(signals)} signals).",
        "license": pol.license or doc.get("license", "other"),
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),  # of the export
        "time_range": {"start": when(doc["time_range"]["start"]), "end": when(doc["time_range"]["end"])},
        "time": "relative: elapsed_us and the other time columns are int64 microseconds since the dataset start"
                if rel else "absolute UTC",
        "rows": sum(a["rows"] for a in new_assets.values()),
        "build": {"period": build["period"], "period_us": build["period_us"],
                  "fill_limit_periods": build["fill_limit_periods"],
                  "cycles": {"mode": cyc["mode"], "signal": cyc_plan["column"]} if cyc and cyc_plan else None,
                  "split": {**build["split"], "train_end": when(build["split"]["train_end"]),
                            "validation_end": when(build["split"]["validation_end"])}},
        "states": doc["states"],
        "issues": {k: sum(s["stats"].get(k) or 0 for s in signals) for k in
                   ("raw_rows", "used_rows", "duplicate_rows", "conflicting_rows", "out_of_order_rows",
                    "bad_quality_rows", "text_in_numeric_rows")},
        "assets": sorted(new_assets.values(), key=lambda a: a["partition"]),
        "signals": signals,
        "files": out_files,
        "sharing": {
            "policy_fingerprint": pol.fingerprint(),
            "assets": pol.assets, "time": pol.time, "events": pol.events, "default": pol.default,
            "signals_dropped": sum(1 for v in plan.values() if v is None),
            "signals_pseudonymised": sum(1 for v in plan.values() if v and v["column"] != v["sig"]["column"]),
            "signals_quantised": sum(1 for v in plan.values() if v and v["quantise"]),
            "signals_noised": sum(1 for v in plan.values() if v and v["noise"]),
            "pseudonyms": "HMAC-SHA256(key, name), first 40 bits",
        },
        "provenance": {"builder": {"axedge_version": axedge_version()},
                       "source": {"files": [], "producers": [], "note": "withheld by the sharing policy"}},
    }
    (dst / META_DIR).mkdir(exist_ok=True)
    _dump(dst / META_DIR / DATASET_FILE, new_doc)
    _dump(dst / CROISSANT_FILE, croissant.from_metadata(new_doc, dst))
    _atomic_text(dst / CARD_FILE, card.render(new_doc))
    return new_doc


def _sha256(p: Path) -> str:
    from dataset_builder.manifest import sha256_file

    return sha256_file(p)


def _parse_iso(text: str) -> int:
    from dataset_builder.labels import parse_time_us

    return parse_time_us(text)
