"""Events and labels: load them, and join them onto curated rows and cycles.

Two inputs share one shape, one JSON object per line (or a CSV with the same columns)::

    {"start": "2026-11-23T10:00:00Z", "end": "2026-11-23T10:05:00Z", "kind": "bearing_wear",
     "signals": ["acme/plant1/line1/press/vibration"], "asset": "acme/plant1/line1/press"}

* simulator ground truth (``source = "ground_truth"``), written by ``hardware/`` simulators;
* a user label file (``source = "label"``), e.g. windows marked by a maintenance engineer.

``start``/``end`` are ISO 8601 (``Z`` or offset; naive means UTC) or epoch seconds. ``end``
missing means an instant (``end = start``). An event belongs to an asset when its ``asset``
names it, or one of its ``signals`` (keys ``<asset path>/<name>``) lives under it; an event
with neither applies to every asset.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataset_builder.format import TS_US_UTC, DatasetError, asset_partition_value

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("start", TS_US_UTC, nullable=False),
        pa.field("end", TS_US_UTC, nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("asset", pa.string()),  # asset partition value, null = every asset
        pa.field("signals", pa.list_(pa.string())),
    ],
    metadata={b"axedge.layer": b"events"},
)


def parse_time_us(value: Any) -> int:
    """Epoch microseconds (UTC) from ISO 8601 text, epoch seconds, or a datetime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(round(float(value) * 1_000_000))
    if isinstance(value, dt.datetime):
        d = value
    else:
        s = str(value).strip()
        try:
            return int(round(float(s) * 1_000_000))
        except ValueError:
            pass
        try:
            d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"not a time: {value!r} (use ISO 8601 or epoch seconds)") from exc
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return (d - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def iso(us: int) -> str:
    """Epoch microseconds as ISO 8601 UTC text (``2026-11-23T10:00:00Z``, microseconds when set)."""
    d = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=int(us))
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if d.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def load_events(path: str | Path, source: str) -> list[dict[str, Any]]:
    """Events from a JSON-lines (``.jsonl``/``.json``) or CSV file, normalised (times in epoch us)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise DatasetError(f"cannot read {source} file {p}: {exc.strerror}", path=str(p)) from exc
    if p.suffix.lower() == ".csv":
        raw = list(csv.DictReader(text.splitlines()))
        for r in raw:
            r["signals"] = [s for s in (r.get("signals") or "").split(";") if s]
    else:
        raw = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw.append(json.loads(line))
            except ValueError as exc:
                raise DatasetError(f"{p}:{n}: not a JSON object: {exc}", path=str(p),
                                   hint="one JSON object per line: {start, end, kind, signals}") from exc
    out = []
    for n, r in enumerate(raw, 1):
        try:
            start = parse_time_us(r["start"])
            end = parse_time_us(r.get("end") or r["start"])
            kind = str(r.get("kind") or r.get("label") or "")
        except (KeyError, ValueError) as exc:
            raise DatasetError(f"{p} record {n}: {exc}", path=str(p),
                               hint="each record needs start (and end, kind)") from exc
        if not kind or end < start:
            raise DatasetError(f"{p} record {n}: empty kind or end before start", path=str(p))
        signals = [str(s) for s in (r.get("signals") or [])]
        asset = r.get("asset")
        out.append({"start": start, "end": end, "kind": kind, "source": source,
                    "asset": asset_partition_value(asset) if asset else None, "signals": signals})
    return out


def for_asset(events: list[dict[str, Any]], asset_part: str, asset_path: str, names: set[str]) -> list[dict[str, Any]]:
    """The events that concern one asset (see the module docstring)."""
    out = []
    for e in events:
        if e["asset"] is not None:
            if e["asset"] == asset_part:
                out.append(e)
        elif e["signals"]:
            if any(s.startswith(asset_path + "/") or s in names for s in e["signals"]):
                out.append(e)
        else:
            out.append(e)
    return out


def label_rows(times_us: np.ndarray, step_us: int, events: list[dict[str, Any]]) -> pa.Array:
    """Per row (covering ``[t, t + step)``), the kinds of the events overlapping it, sorted and
    joined with ``|``; null where none. An instant event (``end == start``) marks the row holding it."""
    n = times_us.shape[0]
    if n == 0 or not events:
        return pa.nulls(n, pa.string())
    kinds = sorted({e["kind"] for e in events})
    bit = {k: i for i, k in enumerate(kinds)}
    mask = np.zeros(n, dtype=object if len(kinds) > 62 else np.int64)
    for k in kinds:  # one +1/-1 sweep per kind: rows covered by at least one event of that kind
        delta = np.zeros(n + 1, np.int64)
        for e in events:
            if e["kind"] != k:
                continue
            lo = int(np.searchsorted(times_us, e["start"] - step_us, side="right"))
            hi = int(np.searchsorted(times_us, max(e["end"], e["start"] + 1), side="left"))
            if hi > lo:
                delta[lo] += 1
                delta[hi] -= 1
        covered = np.cumsum(delta[:-1]) > 0
        mask[covered] += 1 << bit[k]
    names = {m: "|".join(k for k in kinds if int(m) >> bit[k] & 1) for m in np.unique(mask).tolist() if m}
    return pa.array([names.get(m) for m in mask.tolist()], pa.string())


def overlapping_kinds(start_us: int, end_us: int, events: list[dict[str, Any]]) -> str | None:
    """Kinds of the events overlapping ``[start, end)`` (for the cycle table)."""
    kinds = sorted({e["kind"] for e in events if e["start"] < end_us and e["end"] >= start_us})
    return "|".join(kinds) if kinds else None


def events_table(events: list[dict[str, Any]]) -> pa.Table:
    events = sorted(events, key=lambda e: (e["start"], e["end"], e["kind"], e["asset"] or ""))
    return pa.table(
        {
            "start": pa.array([e["start"] for e in events], pa.int64()).cast(TS_US_UTC),
            "end": pa.array([e["end"] for e in events], pa.int64()).cast(TS_US_UTC),
            "kind": [e["kind"] for e in events],
            "source": [e["source"] for e in events],
            "asset": pa.array([e["asset"] for e in events], pa.string()),
            "signals": pa.array([e["signals"] for e in events], pa.list_(pa.string())),
        },
        schema=EVENTS_SCHEMA,
    )
