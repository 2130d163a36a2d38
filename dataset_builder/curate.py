"""The curated layer: raw samples of one (asset, day) -> one wide row per grid period.

:func:`build` plans the work (partitions, time range, splits, events) and hands one task per
(asset, UTC day) to an engine (:mod:`dataset_builder.engine`: a local process pool, or Spark);
:func:`build_partition` is the pure per-partition function every engine runs. It reads only its
partition (plus the tail of the previous day, for forward fill and cycle edges), so memory is
bounded by one partition, never by the dataset.

Per signal and grid period ``[t, t + period)``:

* usable samples are those with good or uncertain quality and a value; they are aggregated with
  the signal's function (``last`` ``first`` ``mean`` ``min`` ``max`` ``sum``; default ``mean`` for
  floats, ``last`` for integers, booleans and text);
* a period without usable samples takes the last known value if it is at most ``fill_limit``
  old and no bad-quality period came in between (state ``filled``), else stays null: ``missing``,
  or ``bad`` when only bad-quality samples arrived. Nothing is invented across longer gaps.

Bad input is handled, counted in the statistics and never silently merged: exact duplicate rows
(same signal and time and value) are dropped; rows with the same signal and time but different
values keep the one received last (``conflicting_rows``); out-of-order files and rows are sorted
by source time; rows of signals not in the catalog are left out (``unknown_signal_rows``); text in
a numeric signal is ignored (``text_in_numeric_rows``); clock jumps show up as out-of-order rows
and, as samples are placed by their own source time, as gaps; an empty time range is an error.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dataset_builder import stats as stats_mod
from dataset_builder.cycles import CycleSpec, segment
from dataset_builder.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    RAW_DIR,
    TS_US_UTC,
    UNKNOWN_PARTITION,
    DatasetError,
    asset_partition_value,
)
from dataset_builder.labels import for_asset, iso, label_rows, load_events, parse_time_us
from dataset_builder.splits import Splits

log = logging.getLogger("axedge.dataset.curate")

CURATED_DIR = "curated"
CYCLES_DIR = "cycles"
EVENTS_DIR = "events"
US_PER_DAY = 86_400_000_000

# per-signal state codes of the ``<signal>__state`` columns
OBSERVED, FILLED, MISSING, BAD = 0, 1, 2, 3
STATES = {OBSERVED: "observed", FILLED: "filled", MISSING: "missing", BAD: "bad"}
AGGREGATIONS = ("last", "first", "mean", "min", "max", "sum")
RESERVED = {"time", "label", "split", "cycle_start"}
_TEXT_DTYPES = {"string", "json", "datetime"}
_FLOAT_DTYPES = {"float32", "float64", "double", "float", None, ""}
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|sec|m|min|h|d)\s*$")
_DUR_US = {"us": 1, "ms": 1000, "s": 1_000_000, "sec": 1_000_000, "m": 60_000_000, "min": 60_000_000,
           "h": 3_600_000_000, "d": US_PER_DAY}


def parse_duration_us(text: str | int | float) -> int:
    """``"1s"``, ``"100ms"``, ``"5min"``, ``"1h"`` (or a number of seconds) -> microseconds."""
    if isinstance(text, (int, float)):
        return int(round(text * 1_000_000))
    m = _DUR.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 100ms, 1s, 5min, 1h)")
    return int(round(float(m.group(1)) * _DUR_US[m.group(2)]))


@dataclass(frozen=True)
class SignalPlan:
    """One output column of an asset."""

    key: str
    name: str
    column: str
    agg: str
    text: bool


@dataclass
class BuildSpec:
    """Everything a partition task needs besides its (asset, date); plain data (pickles to Spark)."""

    period_us: int
    fill_limit_periods: int
    start_us: int | None
    end_us: int | None
    splits: Splits
    cycles: CycleSpec | None
    events: list[dict[str, Any]] = field(default_factory=list)
    compression: str = "zstd"
    #: with cycles: periods read before and after the day, so cycles crossing midnight are whole
    cycle_window_periods: int = 0


@dataclass(frozen=True)
class Task:
    asset: str  # partition value (site.area.line.asset)
    asset_path: str
    date: str  # YYYY-MM-DD
    signals: tuple[SignalPlan, ...]


# --------------------------------------------------------------------------- planning


def plan_signals(catalog_rows: list[dict[str, Any]], aggregations: dict[str, str] | None,
                 cycle_signal: str | None = None) -> dict[str, list[SignalPlan]]:
    """Output columns per asset partition, sorted by signal name (stable across days). The cycle
    signal defaults to ``last``: a mean of two counter values is no counter value."""
    aggregations = aggregations or {}
    for a in aggregations.values():
        if a not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {a!r}; use one of {', '.join(AGGREGATIONS)}")
    by_asset: dict[str, list[SignalPlan]] = {}
    for r in sorted(catalog_rows, key=lambda r: (r["asset_partition"], r["name"])):
        part = r["asset_partition"]
        if part == UNKNOWN_PARTITION:
            continue
        dtype = r.get("dtype")
        text = dtype in _TEXT_DTYPES
        extra = r.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra or "{}")
        agg = next((a for pat, a in aggregations.items()
                    if fnmatch.fnmatchcase(r["name"], pat) or fnmatch.fnmatchcase(r["key"], pat)), None)
        is_cycle = cycle_signal is not None and cycle_signal in (r["name"], r["key"])
        agg = agg or extra.get("aggregation") or ("mean" if dtype in _FLOAT_DTYPES and not is_cycle else "last")
        if text:
            agg = "last" if agg not in ("last", "first") else agg
        cols = by_asset.setdefault(part, [])
        used = {c.column for c in cols}
        column = r["name"]
        while column in RESERVED or column in used or column.endswith("__state"):
            column += "_"
        cols.append(SignalPlan(key=r["key"], name=r["name"], column=column, agg=agg, text=text))
    return by_asset


def raw_partitions(raw_root: Path) -> list[tuple[str, str]]:
    """Committed (asset partition, date) pairs of a raw dataset, sorted."""
    base = raw_root / RAW_DIR
    out = []
    for a in sorted(base.glob("asset=*")):
        for d in sorted(a.glob("date=*")):
            if any(d.glob("*.parquet")):
                out.append((a.name[len("asset="):], d.name[len("date="):]))
    return out


def _files(raw_root: Path, asset: str, date: str) -> list[str]:
    d = raw_root / RAW_DIR / f"asset={asset}" / f"date={date}"
    return sorted(str(p) for p in d.glob("*.parquet")) if d.is_dir() else []


def _time_range(files: list[str]) -> tuple[int, int] | None:
    """Min and max ``time`` from the Parquet footers (no data pages read)."""
    lo, hi = None, None
    for f in files:
        md = pq.ParquetFile(f).metadata
        idx = md.schema.to_arrow_schema().get_field_index("time")
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(idx).statistics
            if st is None or not st.has_min_max:
                continue
            a, b = _us(st.min), _us(st.max)
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
    return None if lo is None else (lo, hi)


def _us(v: Any) -> int:
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return (v - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
    return int(v)


def _day_start(date: str) -> int:
    return (dt.date.fromisoformat(date) - dt.date(1970, 1, 1)).days * US_PER_DAY


# --------------------------------------------------------------------------- per partition


def build_partition(raw_root: str, out_root: str, task: Task, spec: BuildSpec) -> dict[str, Any]:
    """Build the curated (and cycle) file of one (asset, day); return its summary (JSON-able).

    Pure in its inputs: the same raw files and spec give the same output bytes, whatever engine
    runs it."""
    raw = Path(raw_root)
    P = spec.period_us
    L = spec.fill_limit_periods
    day0 = _day_start(task.date)
    lo = day0 if spec.start_us is None else max(day0, spec.start_us)
    hi = day0 + US_PER_DAY if spec.end_us is None else min(day0 + US_PER_DAY, spec.end_us)
    summary: dict[str, Any] = {"asset": task.asset, "date": task.date, "rows": 0, "signals": {},
                               "issues": {"unknown_signal_rows": 0, "rows_outside_range": 0}, "outages": []}
    if hi <= lo:
        return summary
    W = spec.cycle_window_periods if spec.cycles is not None else 0
    B = max(L, W)  # look-back rows: forward fill, and cycles that started before the day
    look = (lo // P - B) * P
    ahead = hi + W * P if spec.end_us is None else min(hi + W * P, spec.end_us)
    table = _read(raw, task, look, ahead)
    key_index = {s.key: i for i, s in enumerate(task.signals)}
    sidx = _signal_index(table.column("signal"), key_index)
    t = pc.cast(table.column("time"), pa.int64()).to_numpy()
    unknown = sidx < 0
    summary["issues"]["unknown_signal_rows"] = int(np.count_nonzero(unknown & (t >= lo) & (t < hi)))
    in_day = (t >= lo) & (t < hi) & ~unknown
    if not in_day.any():
        return summary
    g0 = int(t[in_day].min()) // P * P
    g_last = int(t[in_day].max()) // P * P
    G = (g_last - g0) // P + 1
    # look-ahead rows (cycles running past the day's end), up to the last sample read
    A = max(0, min(W, (int(t[~unknown].max()) // P * P - g_last) // P)) if W else 0
    start = g0 - B * P  # the grid with its look-back and look-ahead rows
    n_all = B + G + A
    times = g0 + P * np.arange(G, dtype=np.int64)

    keep = ~unknown & (t >= start) & (t < start + n_all * P)
    table = table.filter(pa.array(keep))
    sidx, t = sidx[keep], t[keep]
    values = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64)  # null -> nan
    has_v = table.column("value").is_valid().to_numpy(zero_copy_only=False)
    has_txt = table.column("value_text").is_valid().to_numpy(zero_copy_only=False)
    q = table.column("quality").to_numpy(zero_copy_only=False)
    rt = pc.cast(table.column("receive_time"), pa.int64()).to_numpy()
    bad_q = (q >> 30) >= 2
    order = np.argsort(sidx, kind="stable")
    counts = np.bincount(sidx, minlength=len(task.signals))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    text_col = None

    columns: dict[str, pa.Array] = {"time": pa.array(times, pa.int64()).cast(TS_US_UTC)}
    feature_cols: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    cycle_vals: tuple[np.ndarray, np.ndarray] | None = None
    row_missing = np.ones(G, bool)
    for i, sig in enumerate(task.signals):
        seg = order[bounds[i]:bounds[i + 1]]
        issues = {c: 0 for c in stats_mod.COUNTS}
        if seg.shape[0]:
            ts = t[seg]
            if np.any(np.diff(ts) <= 0):
                issues["out_of_order_rows"] = int(np.count_nonzero(np.diff(ts) < 0))
                seg = seg[np.lexsort((rt[seg], ts))]
                ts = t[seg]
            in_rng = (ts >= lo) & (ts < hi)
            issues["raw_rows"] = int(np.count_nonzero(in_rng))
            # same signal and time: keep the row received last
            later_same = np.zeros(seg.shape[0], bool)
            later_same[:-1] = ts[1:] == ts[:-1]
            if later_same.any():
                dup_i = np.flatnonzero(later_same)
                a, b = seg[dup_i], seg[dup_i + 1]
                same = ((values[a] == values[b]) | (np.isnan(values[a]) & np.isnan(values[b]))) & (q[a] == q[b])
                if has_txt.any():
                    txt = text_col if text_col is not None else table.column("value_text").to_numpy(zero_copy_only=False)
                    text_col = txt
                    same &= txt[a] == txt[b]
                in_d = in_rng[dup_i]
                issues["duplicate_rows"] = int(np.count_nonzero(same & in_d))
                issues["conflicting_rows"] = int(np.count_nonzero(~same & in_d))
                seg, ts, in_rng = seg[~later_same], ts[~later_same], in_rng[~later_same]
            bq = bad_q[seg]
            issues["bad_quality_rows"] = int(np.count_nonzero(bq & in_rng))
            if sig.text:
                txt = text_col if text_col is not None else table.column("value_text").to_numpy(zero_copy_only=False)
                text_col = txt
                sv = np.where(has_txt[seg], txt[seg], np.where(has_v[seg], values[seg].astype(str), None))
                usable = ~bq & (has_txt[seg] | has_v[seg])
            else:
                sv = values[seg]
                usable = ~bq & has_v[seg]
                issues["text_in_numeric_rows"] = int(np.count_nonzero(~has_v[seg] & has_txt[seg] & in_rng))
            issues["used_rows"] = int(np.count_nonzero(usable & in_rng))
            bins = (ts - start) // P
            grid_v, state = _aggregate(bins[usable], sv[usable], sig.agg, n_all, sig.text)
            bad_bins = np.unique(bins[bq])
            state[bad_bins[state[bad_bins] == MISSING]] = BAD
            if usable.any():
                tu = ts[usable & in_rng]
                if tu.shape[0]:
                    issues["time_min"], issues["time_max"] = int(tu.min()), int(tu.max())
                if tu.shape[0] > 1:
                    issues["interval_us"] = int(np.median(np.diff(tu)))
        else:
            grid_v = np.full(n_all, None, object) if sig.text else np.full(n_all, np.nan)
            state = np.full(n_all, MISSING, np.int8)
        _fill(grid_v, state, L, sig.text)
        if not sig.text:
            feature_cols[sig.column] = (grid_v, state <= FILLED)
        if spec.cycles is not None and spec.cycles.signal in (sig.name, sig.key):
            cycle_vals = (grid_v, state <= FILLED)
        grid_v, state = grid_v[B:B + G], state[B:B + G]
        row_missing &= state >= MISSING
        part = stats_mod.partial(None if sig.text else grid_v, state)
        part.update({k: v for k, v in issues.items() if k not in part})
        summary["signals"][sig.key] = part
        if sig.text:
            columns[sig.column] = pa.array(grid_v, pa.string())
        else:
            columns[sig.column] = pa.array(grid_v, pa.float64(), mask=np.isnan(grid_v))
        columns[sig.column + "__state"] = pa.array(state, pa.int8())

    events = for_asset(spec.events, task.asset, task.asset_path, {s.name for s in task.signals})
    columns["label"] = label_rows(times, P, events)
    columns["split"] = spec.splits.assign(times)
    cycles_table = None
    if cycle_vals is not None:
        # segment the whole window; keep the cycles that start on this partition's rows
        t_all = start + P * np.arange(n_all, dtype=np.int64)
        cycles_table, cycle_of = segment(t_all, P, spec.cycles, cycle_vals[0], cycle_vals[1], feature_cols,
                                         events, spec.splits.of_range)
        first = pc.cast(cycles_table.column("cycle_start"), pa.int64())
        cycles_table = cycles_table.filter(pc.and_(pc.greater_equal(first, g0), pc.less_equal(first, g_last)))
        cycle_of = cycle_of[B:B + G]
        columns["cycle_start"] = pa.array(cycle_of, pa.int64(), mask=cycle_of < 0).cast(TS_US_UTC)
    curated = pa.table(columns)
    summary["outages"] = _outages(times, P, row_missing)
    rel = f"{CURATED_DIR}/asset={task.asset}/date={task.date}/part-0.parquet"
    summary.update(rows=G, file=_write(Path(out_root), rel, curated, spec, "curated"),
                   time_min=iso(int(times[0])), time_max=iso(int(times[-1])))
    if cycles_table is not None and cycles_table.num_rows:
        crel = f"{CYCLES_DIR}/asset={task.asset}/date={task.date}/part-0.parquet"
        summary["cycles_file"] = _write(Path(out_root), crel, cycles_table, spec, "cycles")
        summary["cycles"] = cycles_table.num_rows
    return summary


def _read(raw: Path, task: Task, lo: int, hi: int) -> pa.Table:
    """Rows of the asset in ``[lo, hi)``: the partition's day and the edges of its neighbours."""
    cols = ["time", "signal", "value", "value_text", "quality", "receive_time"]
    tables = []
    for k in range(lo // US_PER_DAY, -(-hi // US_PER_DAY)):
        date = (dt.date(1970, 1, 1) + dt.timedelta(days=k)).isoformat()
        files = _files(raw, task.asset, date)
        if not files:
            continue
        dset = ds.dataset(files, format="parquet")
        day0 = _day_start(date)
        if lo <= day0 and hi >= day0 + US_PER_DAY:  # the whole day: no filter to evaluate
            tables.append(dset.to_table(columns=cols))
            continue
        flt = (ds.field("time") >= pa.scalar(lo, TS_US_UTC)) & (ds.field("time") < pa.scalar(hi, TS_US_UTC))
        tables.append(dset.to_table(columns=cols, filter=flt))
    if not tables:
        raise DatasetError(f"no raw files for asset {task.asset} around {task.date}", path=str(raw / RAW_DIR))
    return pa.concat_tables(tables, promote_options="permissive")


def _signal_index(col: pa.ChunkedArray, key_index: dict[str, int]) -> np.ndarray:
    """Output-column index of each row's signal key (-1 for keys not in the plan)."""
    parts = []
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            lut = np.array([key_index.get(k, -1) for k in chunk.dictionary.to_pylist()], np.int64)
            codes = chunk.indices.to_numpy(zero_copy_only=False)
            parts.append(lut[codes] if lut.shape[0] else np.full(len(chunk), -1, np.int64))
        else:
            parts.append(np.array([key_index.get(k, -1) for k in chunk.to_pylist()], np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _aggregate(bins: np.ndarray, v: np.ndarray, agg: str, n: int, text: bool) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate time-sorted samples into ``n`` grid bins: (values, state)."""
    out = np.full(n, None, object) if text else np.full(n, np.nan)
    state = np.full(n, MISSING, np.int8)
    if bins.shape[0] == 0:
        return out, state
    starts = np.flatnonzero(np.concatenate([[True], bins[1:] != bins[:-1]]))
    ends = np.append(starts[1:], bins.shape[0])
    b = bins[starts]
    if agg == "last":
        out[b] = v[ends - 1]
    elif agg == "first":
        out[b] = v[starts]
    elif agg == "mean":
        out[b] = np.add.reduceat(v, starts) / (ends - starts)
    elif agg == "sum":
        out[b] = np.add.reduceat(v, starts)
    elif agg == "min":
        out[b] = np.minimum.reduceat(v, starts)
    elif agg == "max":
        out[b] = np.maximum.reduceat(v, starts)
    state[b] = OBSERVED
    return out, state


def _fill(v: np.ndarray, state: np.ndarray, limit: int, text: bool) -> None:
    """Forward-fill missing periods from the last observed one, at most ``limit`` periods on and
    never across a bad-quality period (in place)."""
    if limit <= 0:
        return
    idx = np.arange(state.shape[0])
    anchor = np.maximum.accumulate(np.where(state != MISSING, idx, -1))
    ok = (state == MISSING) & (anchor >= 0) & (idx - anchor <= limit)
    ok &= state[np.maximum(anchor, 0)] == OBSERVED
    v[ok] = v[anchor[ok]]
    state[ok] = FILLED


def _outages(times: np.ndarray, P: int, row_missing: np.ndarray) -> list[dict[str, Any]]:
    """Runs of rows where no signal of the asset had a value (the asset was silent)."""
    if not row_missing.any():
        return []
    edges = np.diff(np.concatenate([[0], row_missing.view(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [{"start": iso(int(times[s])), "end": iso(int(times[e - 1]) + P), "rows": int(e - s)}
            for s, e in zip(starts.tolist(), ends.tolist())]


def _write(root: Path, rel: str, table: pa.Table, spec: BuildSpec, layer: str) -> dict[str, Any]:
    """Write atomically (tmp in the same directory, fsync, rename); return path, rows, bytes, sha256."""
    from dataset_builder.manifest import fsync_dir, fsync_file, sha256_file

    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {b"axedge.format": f"{FORMAT_NAME}/{FORMAT_VERSION}".encode(), b"axedge.layer": layer.encode(),
            b"axedge.period_us": str(spec.period_us).encode()}
    table = table.replace_schema_metadata(meta)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression=None if spec.compression == "none" else spec.compression,
                   use_dictionary=[c for c in ("label", "split") if c in table.column_names] or False,
                   row_group_size=1 << 17)
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return {"path": rel, "rows": table.num_rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


# --------------------------------------------------------------------------- driver


@dataclass
class BuildResult:
    out: Path
    partitions: list[dict[str, Any]]
    metadata: dict[str, Any]

    @property
    def rows(self) -> int:
        return sum(p["rows"] for p in self.partitions)


def build(
    raw_root: str | Path,
    out: str | Path,
    assets: list[str] | None = None,
    period: str = "1s",
    start: str | None = None,
    end: str | None = None,
    *,
    fill_limit: str | None = None,
    aggregations: dict[str, str] | None = None,
    cycles: CycleSpec | dict | None = None,
    events: list[str | Path] | None = None,
    labels: list[str | Path] | None = None,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    embargo: str | None = None,
    max_cycle: str = "1h",
    engine: str = "local",
    workers: int | None = None,
    overwrite: bool = False,
    compression: str = "zstd",
    description: str | None = None,
    license: str = "other",
) -> BuildResult:
    """Build the curated layer of ``raw_root`` into ``out`` (see the module docstring).

    ``fill_limit`` defaults to 5 periods, ``embargo`` to max(fill limit, 60 periods). Cycles
    crossing midnight are whole when they last at most ``max_cycle`` (read across the day edge).
    ``assets`` are asset paths, partition values or globs of either."""
    from dataset_builder import engine as engine_mod
    from dataset_builder import metadata as meta_mod
    from dataset_builder.read import read_catalog

    raw_root, out = Path(raw_root), Path(out)
    P = parse_duration_us(period)
    if P <= 0 or US_PER_DAY % P:
        raise ValueError(f"period {period!r} must divide a day (e.g. 100ms, 1s, 5min, 1h)")
    L = -(-parse_duration_us(fill_limit) // P) if fill_limit is not None else 5
    start_us = parse_time_us(start) if start else None
    end_us = parse_time_us(end) if end else None
    if isinstance(cycles, dict):
        cycles = CycleSpec(signal=cycles["signal"], mode=cycles.get("mode", "counter"),
                           active=tuple(cycles.get("active") or ()))

    catalog_rows = [dict(r) for r in read_catalog(raw_root).to_pylist()]
    plans = plan_signals(catalog_rows, aggregations, cycles.signal if cycles else None)
    asset_path = {r["asset_partition"]: r["asset"] for r in catalog_rows}
    parts = [(a, d) for a, d in raw_partitions(raw_root) if a != UNKNOWN_PARTITION and a in plans]
    if assets:
        pats = [asset_partition_value(x) if "*" not in x else x.replace("/", ".") for x in assets]
        parts = [(a, d) for a, d in parts if any(fnmatch.fnmatchcase(a, p) for p in pats)]
    if start_us is not None:
        parts = [(a, d) for a, d in parts if _day_start(d) + US_PER_DAY > start_us]
    if end_us is not None:
        parts = [(a, d) for a, d in parts if _day_start(d) < end_us]
    rng = _time_range([f for a, d in parts for f in _files(raw_root, a, d)])
    if rng is not None:
        rng = (max(rng[0], start_us) if start_us is not None else rng[0],
               min(rng[1], end_us - 1) if end_us is not None else rng[1])
    if rng is None or rng[0] > rng[1]:
        raise DatasetError(
            f"no raw data in {raw_root} for assets {assets or 'all'} between {start or 'the start'} and "
            f"{end or 'the end'}", path=str(raw_root),
            hint="check --assets, --from and --to against `axedge dataset describe`")
    t_min = rng[0] // P * P
    t_max = rng[1] // P * P
    embargo_us = parse_duration_us(embargo) if embargo is not None else max(L, 60) * P
    splits = Splits.plan(t_min, t_max, P, split_fractions, embargo_us)
    evs = [e for f in events or [] for e in load_events(f, "ground_truth")]
    evs += [e for f in labels or [] for e in load_events(f, "label")]

    for sub in (CURATED_DIR, CYCLES_DIR, EVENTS_DIR):
        if (out / sub).exists():
            if not overwrite:
                raise DatasetError(f"{out / sub} exists", path=str(out / sub),
                                   hint="build into a new directory or pass overwrite=True (--overwrite)")
            shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)
    spec = BuildSpec(period_us=P, fill_limit_periods=L, start_us=start_us, end_us=end_us, splits=splits,
                     cycles=cycles, events=evs, compression=compression,
                     cycle_window_periods=-(-parse_duration_us(max_cycle) // P) if cycles else 0)
    tasks = [Task(asset=a, asset_path=asset_path.get(a, a.replace(".", "/")), date=d, signals=tuple(plans[a]))
             for a, d in parts]
    log.info("event=build_start partitions=%d period_us=%d engine=%s", len(tasks), P, engine)
    summaries = engine_mod.run(engine, str(raw_root), str(out), tasks, spec, workers=workers)
    summaries = sorted((s for s in summaries if s["rows"]), key=lambda s: (s["asset"], s["date"]))
    if not summaries:
        raise DatasetError(f"no rows in the selected range of {raw_root}", path=str(raw_root),
                           hint="check --from and --to")
    if evs:
        from dataset_builder.labels import events_table

        _write(out, f"{EVENTS_DIR}/events.parquet", events_table(evs), spec, "events")
    build_params = {"period": period, "period_us": P, "fill_limit_periods": L, "from": start, "to": end,
                    "assets": assets, "aggregations": aggregations or {},
                    "cycles": asdict(cycles) | {"max_cycle": max_cycle} if cycles else None, "engine": engine,
                    "split": splits.to_dict() | {"fractions": list(split_fractions)},
                    "events": [str(Path(f).name) for f in events or []],
                    "labels": [str(Path(f).name) for f in labels or []]}
    # rows the writer could not attribute (signal id not in the catalog) live in their own partition
    unknown_rows = sum(pq.ParquetFile(f).metadata.num_rows for a, d in raw_partitions(raw_root)
                       if a == UNKNOWN_PARTITION and t_min // US_PER_DAY * US_PER_DAY <= _day_start(d) <= t_max
                       for f in _files(raw_root, a, d))
    metadata = meta_mod.write_all(raw_root, out, catalog_rows, plans, summaries, build_params,
                                  description=description, license=license, unknown_rows=unknown_rows)
    return BuildResult(out=out, partitions=summaries, metadata=metadata)
