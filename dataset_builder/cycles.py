"""Production cycles: segment the curated grid of one asset into a per-cycle feature table.

A cycle is a maximal run of grid rows over which a *cycle signal* holds one value:

* ``mode: counter``: a part or stroke counter; every run of one counter value is a cycle;
* ``mode: state``: a machine state (number or text); runs whose value is in ``active`` are
  cycles (all runs when ``active`` is empty, e.g. the phases of a CNC program).

Rows where the cycle signal is missing (a gap longer than the fill limit, or bad quality) end a
run: nothing is assumed across them. A cycle is ``complete`` when both of its neighbours are
known values, i.e. its start and end were seen inside this (asset, day) partition; cycles cut by
midnight or a gap are kept with ``complete = false``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from dataset_builder.format import TS_US_UTC
from dataset_builder.labels import overlapping_kinds

FEATURES = ("mean", "min", "max", "std")


@dataclass(frozen=True)
class CycleSpec:
    signal: str  # signal name within the asset (or its key)
    mode: str = "counter"  # counter | state
    active: tuple[Any, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.mode not in ("counter", "state"):
            raise ValueError(f"cycle mode must be counter or state, not {self.mode!r}")


def runs(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the maximal runs of equal values over valid rows."""
    n = values.shape[0]
    if n == 0:
        z = np.zeros(0, np.int64)
        return z, z
    codes = np.full(n, -1, np.int64)
    if valid.any():
        _, inv = np.unique(values[valid], return_inverse=True)
        codes[valid] = inv
    change = np.ones(n, bool)
    change[1:] = codes[1:] != codes[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n)
    keep = codes[starts] >= 0
    return starts[keep], ends[keep]


def segment(times_us: np.ndarray, period_us: int, spec: CycleSpec, values: np.ndarray, valid: np.ndarray,
            features: dict[str, tuple[np.ndarray, np.ndarray]], events: list[dict[str, Any]],
            split_of: Any) -> tuple[pa.Table, np.ndarray]:
    """The cycle table and, per grid row, the start time of its cycle (-1 outside cycles).

    ``features`` maps column name -> (float values, usable mask) of the numeric signals;
    ``split_of(start_us, end_us)`` gives the split of a cycle (None when it straddles a boundary).
    """
    n = times_us.shape[0]
    starts, ends = runs(values, valid)
    if spec.mode == "state" and spec.active and starts.shape[0]:
        active = {str(a) for a in spec.active} | {a for a in spec.active}
        vals = values[starts]
        keep = np.array([(v in active) or (_num_text(v) in active) for v in vals.tolist()], bool)
        starts, ends = starts[keep], ends[keep]
    cycle_of = np.full(n, -1, np.int64)
    for s, e in zip(starts.tolist(), ends.tolist()):
        cycle_of[s:e] = times_us[s]
    prev_ok = np.array([s > 0 and bool(valid[s - 1]) for s in starts.tolist()], bool)
    next_ok = np.array([e < n and bool(valid[e]) for e in ends.tolist()], bool)
    t_start = times_us[starts] if n else np.zeros(0, np.int64)
    t_end = times_us[ends - 1] + period_us if n and starts.shape[0] else np.zeros(0, np.int64)
    cols: dict[str, pa.Array] = {
        "cycle_start": pa.array(t_start, pa.int64()).cast(TS_US_UTC),
        "cycle_end": pa.array(t_end, pa.int64()).cast(TS_US_UTC),
        "duration_s": pa.array((t_end - t_start) / 1e6, pa.float64()),
        "rows": pa.array(ends - starts, pa.int64()),
        "value": pa.array([_num_text(v) for v in values[starts].tolist()], pa.string()),
        "complete": pa.array(prev_ok & next_ok, pa.bool_()),
        "label": pa.array([overlapping_kinds(a, b, events) for a, b in zip(t_start.tolist(), t_end.tolist())],
                          pa.string()),
        "split": pa.array([split_of(a, b) for a, b in zip(t_start.tolist(), t_end.tolist())], pa.string()),
    }
    if starts.shape[0]:
        for name, (v, ok) in features.items():
            cols.update(_features(name, v, ok, starts, ends))
    else:
        for name in features:
            for f in FEATURES:
                cols[f"{name}__{f}"] = pa.array([], pa.float64())
    return pa.table(cols), cycle_of


def _features(name: str, v: np.ndarray, ok: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> dict[str, pa.Array]:
    x = np.where(ok, v, 0.0)
    nan_x = np.where(ok, v, np.nan)
    cnt = _pairwise(ok.astype(np.int64), starts, ends, np.add)
    s1 = _pairwise(x, starts, ends, np.add)
    s2 = _pairwise(x * x, starts, ends, np.add)
    vmin = _pairwise(nan_x, starts, ends, np.fmin)
    vmax = _pairwise(nan_x, starts, ends, np.fmax)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, s1 / np.maximum(cnt, 1), np.nan)
        var = np.maximum(s2 / np.maximum(cnt, 1) - mean * mean, 0.0)
        std = np.where(cnt > 0, np.sqrt(var), np.nan)
    return {f"{name}__mean": _f(mean), f"{name}__min": _f(vmin), f"{name}__max": _f(vmax), f"{name}__std": _f(std)}


def _pairwise(a: np.ndarray, starts: np.ndarray, ends: np.ndarray, fn: np.ufunc) -> np.ndarray:
    """``fn.reduceat`` over ``[start, end)`` ranges that need not be contiguous."""
    idx = np.stack([starts, ends], axis=1).ravel()
    padded = np.append(a, a[:1])  # so an end equal to len(a) is a valid index
    return fn.reduceat(padded, idx)[::2]


def _f(a: np.ndarray) -> pa.Array:
    return pa.array(a, pa.float64(), mask=np.isnan(a))


def _num_text(v: Any) -> str:
    """Cycle values as text: ``12`` not ``12.0`` for integral counters."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
