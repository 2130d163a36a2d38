"""Feature code shared by training, offline scoring and the edge scorer.

One implementation of: reading a table into a time-indexed matrix (wide tables, or the long
``time, signal, value`` layout of axedge raw datasets), aligning irregular samples onto the model's
sampling grid (last value, with a staleness limit), and cutting windows. Normalisation is *not*
here: it lives inside the exported ONNX graph so the edge cannot drift from training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.errors import InputMismatch, TrainingDataError

#: Columns of an axedge long (raw) table; such tables are pivoted onto a grid.
LONG_COLUMNS = ("signal", "value")


@dataclass(slots=True)
class Frame:
    """A wide, time-ordered matrix: ``times_ns`` (n,), ``values`` (n, S) float64 with NaN gaps."""

    times_ns: np.ndarray
    values: np.ndarray
    signals: list[str]
    units: dict[str, str | None]


def as_arrow(data: Any) -> pa.Table:
    """A pyarrow Table from a Table, RecordBatch or pandas DataFrame."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is in the dataset extra
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"expected a pyarrow Table or pandas DataFrame, got {type(data).__name__}")


def _time_ns(col: pa.ChunkedArray) -> np.ndarray:
    t = col.type
    if pa.types.is_timestamp(t):
        return pc.cast(col, pa.timestamp("ns", tz=t.tz)).cast(pa.int64()).to_numpy(zero_copy_only=False)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        # numbers are seconds since the epoch (or sample indexes for unclocked data)
        return (col.to_numpy(zero_copy_only=False).astype(np.float64) * 1e9).astype(np.int64)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        for target in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):  # naive text is read as UTC
            try:
                return pc.cast(pc.cast(col, target), pa.int64()).to_numpy(zero_copy_only=False)
            except pa.ArrowInvalid as exc:
                err = exc
        raise TrainingDataError(f"time column: cannot parse ISO 8601 timestamps ({err})") from err
    raise TrainingDataError(f"time column has unsupported type {t}")


def _field_unit(field: pa.Field) -> str | None:
    md = field.metadata or {}
    u = md.get(b"unit") or md.get(b"axedge.unit")
    return u.decode() if u else None


def numeric_columns(table: pa.Table, exclude: set[str]) -> list[str]:
    return [
        f.name
        for f in table.schema
        if f.name not in exclude and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    ]


def to_frame(
    data: Any,
    signals: list[str] | None = None,
    time_column: str = "time",
    *,
    period_ns: int | None = None,
    units: dict[str, str | None] | None = None,
) -> Frame:
    """Read ``data`` into a :class:`Frame`.

    Wide tables keep their rows (one per timestamp). Long tables (``time, signal, value[, quality]``)
    are pivoted onto a grid of ``period_ns`` (inferred when None) with :func:`align_to_grid`; bad
    quality samples become gaps. ``units`` overrides units read from field metadata (``unit``).
    """
    table = as_arrow(data)
    names = set(table.column_names)
    if time_column not in names:
        raise TrainingDataError(f"no time column {time_column!r} (columns: {sorted(names)[:8]}...)")
    if set(LONG_COLUMNS) <= names and not (signals and set(signals) <= names):
        return _long_to_frame(table, signals, time_column, period_ns, units or {})
    t = _time_ns(table.column(time_column))
    cols = signals if signals is not None else numeric_columns(table, {time_column})
    missing = [c for c in cols if c not in names]
    if missing:
        raise InputMismatch(f"data has no column for signal(s) {missing}")
    if not cols:
        raise TrainingDataError("no numeric signal columns in the data")
    vals = np.empty((table.num_rows, len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        col = table.column(c)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)):
            raise InputMismatch(f"signal column {c!r} is not numeric ({col.type})")
        vals[:, j] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    order = np.argsort(t, kind="stable")
    if not np.all(order == np.arange(len(order))):
        t, vals = t[order], vals[order]
    u = {c: _field_unit(table.schema.field(c)) for c in cols}
    u.update({k: v for k, v in (units or {}).items() if k in u})
    return Frame(t, vals, list(cols), u)


def _long_to_frame(table, signals, time_column, period_ns, units) -> Frame:
    from dataset_builder.format import severity  # light module, no cycle

    t = _time_ns(table.column(time_column))
    sig = pc.cast(table.column("signal"), pa.string()).to_numpy(zero_copy_only=False)
    val = pc.cast(table.column("value"), pa.float64()).to_numpy(zero_copy_only=False)
    if "quality" in table.column_names:
        q = table.column("quality").to_numpy(zero_copy_only=False).astype(np.uint32)
        bad = np.array([severity(int(c)) == "bad" for c in np.unique(q)])
        bad_codes = np.unique(q)[bad]
        val = np.where(np.isin(q, bad_codes), np.nan, val)
    names = sorted(set(sig.tolist())) if signals is None else list(signals)
    missing = [s for s in names if s not in set(sig.tolist())]
    if missing:
        raise InputMismatch(f"data has no samples for signal(s) {missing}")
    if period_ns is None:  # each signal's own spacing: polls of different signals interleave
        period_ns = int(np.median([infer_period_ns(t[sig == s]) for s in names]))
    start = (int(t.min()) // period_ns) * period_ns
    grid = np.arange(start, int(t.max()) + 1, period_ns, dtype=np.int64)
    col = {s: j for j, s in enumerate(names)}
    idx = np.array([col.get(s, -1) for s in sig], dtype=np.int64)
    keep = idx >= 0
    vals = align_to_grid(t[keep], idx[keep], val[keep], grid, len(names), max_age_ns=3 * period_ns)
    return Frame(grid, vals, names, {s: units.get(s) for s in names})


def infer_period_ns(times_ns: np.ndarray) -> int:
    """Median spacing of sorted timestamps (the sampling period)."""
    if len(times_ns) < 2:
        raise TrainingDataError("need at least two timestamps to infer the sampling period")
    d = np.diff(np.sort(times_ns))
    d = d[d > 0]
    if not len(d):
        raise TrainingDataError("all timestamps are equal: cannot infer the sampling period")
    return int(np.median(d))


def align_to_grid(
    t_ns: np.ndarray,
    col: np.ndarray,
    value: np.ndarray,
    grid_ns: np.ndarray,
    n_signals: int,
    *,
    max_age_ns: int,
) -> np.ndarray:
    """Values of ``n_signals`` columns at each grid time: the latest observation at or before the
    grid time, or NaN when there is none or it is older than ``max_age_ns`` (stale). A NaN
    observation (gap, bad quality) hides older values: no value is ever invented across a gap."""
    out, _ = align_with_age(t_ns, col, value, grid_ns, n_signals, max_age_ns=max_age_ns)
    return out


def align_with_age(t_ns, col, value, grid_ns, n_signals, *, max_age_ns):
    """:func:`align_to_grid` plus the age (ns) of the latest observation behind each cell,
    ``-1`` where there is none (so callers can tell *missing* from *stale* from *gap*)."""
    out = np.full((len(grid_ns), n_signals), np.nan)
    age = np.full((len(grid_ns), n_signals), -1, dtype=np.int64)
    if not len(t_ns) or not len(grid_ns):
        return out, age
    t_ns = np.asarray(t_ns, dtype=np.int64)
    grid_ns = np.asarray(grid_ns, dtype=np.int64)
    col = np.asarray(col, dtype=np.int64)
    lo = min(int(t_ns.min()), int(grid_ns.min()))
    span = max(int(t_ns.max()), int(grid_ns.max())) - lo + 1
    if span * n_signals >= 2**62:  # keys would overflow int64: one signal at a time
        for j in range(n_signals):
            m = col == j
            if m.any():
                o, a = align_with_age(t_ns[m], np.zeros(int(m.sum()), np.int64), value[m], grid_ns, 1, max_age_ns=max_age_ns)
                out[:, j], age[:, j] = o[:, 0], a[:, 0]
        return out, age
    # one sorted key (signal, time) for observations and queries: a single searchsorted
    key = col * span + (t_ns - lo)
    order = np.argsort(key, kind="stable")
    key_s, t_s, v_s, c_s = key[order], t_ns[order], np.asarray(value, dtype=np.float64)[order], col[order]
    q = np.arange(n_signals, dtype=np.int64)[None, :] * span + (grid_ns - lo)[:, None]
    k = np.searchsorted(key_s, q, side="right") - 1
    kk = np.clip(k, 0, None)
    seen = (k >= 0) & (c_s[kk] == np.arange(n_signals)[None, :])
    a = grid_ns[:, None] - t_s[kk]
    age[:] = np.where(seen, a, -1)
    out[:] = np.where(seen & (a <= max_age_ns), v_s[kk], np.nan)
    return out, age


def latest_per_column(t_ns, col, value, upto_ns, n_signals):
    """Time and value of the latest observation at or before ``upto_ns`` per column
    (``t = -1`` and NaN where there is none)."""
    t_out = np.full(n_signals, -1, dtype=np.int64)
    v_out = np.full(n_signals, np.nan)
    m = t_ns <= upto_ns
    if m.any():
        t, c, v = t_ns[m], col[m], value[m]
        order = np.lexsort((t, c))
        c_s = c[order]
        last = np.nonzero(np.diff(np.append(c_s, -1)) != 0)[0]  # last index of each column run
        t_out[c_s[last]] = t[order][last]
        v_out[c_s[last]] = v[order][last]
    return t_out, v_out


def windows(values: np.ndarray, window: int) -> np.ndarray:
    """All windows ending at each row from ``window - 1`` on: shape (n - window + 1, window, S),
    a strided view (no copy)."""
    n, s = values.shape
    if n < window:
        return np.empty((0, window, s), dtype=values.dtype)
    return np.lib.stride_tricks.sliding_window_view(values, (window, s))[:, 0]


def valid_windows(times_ns: np.ndarray, values: np.ndarray, window: int, period_ns: int) -> np.ndarray:
    """Boolean (n - window + 1,): the window has no NaN and no time gap longer than 1.5 periods."""
    w = windows(values, window)
    ok = ~np.isnan(w).any(axis=(1, 2))
    if window > 1 and len(times_ns) >= window:
        gap = np.diff(times_ns) > 1.5 * period_ns
        bad = windows(gap[:, None].astype(np.float64), window - 1)[:, :, 0].any(axis=1)
        ok &= ~bad
    return ok


def fingerprint(data: Any) -> str:
    """sha256 of a table's Arrow IPC stream (schema + values), the training-data fingerprint."""
    table = as_arrow(data).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()
