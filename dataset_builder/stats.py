"""Per-signal statistics: mergeable partials per (asset, day) partition, merged by the driver.

Raw-side counts say what the build did with the input (duplicates dropped, conflicts resolved,
out-of-order rows sorted, bad-quality rows excluded, text in a numeric signal ignored); grid-side
counts say how the curated rows were made (observed, forward-filled, missing, bad) and give the
value statistics over observed periods.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: summed counters of a partial
COUNTS = ("raw_rows", "used_rows", "duplicate_rows", "conflicting_rows", "out_of_order_rows", "bad_quality_rows",
          "text_in_numeric_rows", "observed", "filled", "missing", "bad", "gap_runs")


def partial(values: np.ndarray | None, state: np.ndarray) -> dict[str, Any]:
    """Grid-side partial of one signal: counts per state, longest missing run, value moments."""
    from dataset_builder.curate import BAD, FILLED, MISSING, OBSERVED

    p: dict[str, Any] = {
        "observed": int(np.count_nonzero(state == OBSERVED)),
        "filled": int(np.count_nonzero(state == FILLED)),
        "missing": int(np.count_nonzero(state == MISSING)),
        "bad": int(np.count_nonzero(state == BAD)),
    }
    miss = state == MISSING
    if miss.any():
        edges = np.diff(np.concatenate([[0], miss.view(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        p["gap_runs"] = int(starts.shape[0])
        p["longest_gap_rows"] = int((ends - starts).max())
    else:
        p["gap_runs"], p["longest_gap_rows"] = 0, 0
    if values is not None:
        v = values[state == OBSERVED]
        v = v[~np.isnan(v)]
        p.update(n=int(v.shape[0]), sum=float(v.sum()), sumsq=float((v * v).sum()),
                 min=float(v.min()) if v.shape[0] else None, max=float(v.max()) if v.shape[0] else None)
    return p


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge partials of one signal into its final statistics."""
    out: dict[str, Any] = {c: sum(int(p.get(c, 0)) for p in parts) for c in COUNTS}
    out["longest_gap_rows"] = max((int(p.get("longest_gap_rows", 0)) for p in parts), default=0)
    tmins = [p["time_min"] for p in parts if p.get("time_min") is not None]
    tmaxs = [p["time_max"] for p in parts if p.get("time_max") is not None]
    intervals = [p["interval_us"] for p in parts if p.get("interval_us") is not None]
    # median of the partitions' median sampling intervals (exact for regular sampling)
    out["raw_interval_s"] = float(np.median(intervals)) / 1e6 if intervals else None
    out["time_min"] = min(tmins) if tmins else None
    out["time_max"] = max(tmaxs) if tmaxs else None
    if any("n" in p for p in parts):
        n = sum(int(p.get("n", 0)) for p in parts)
        s1 = math.fsum(float(p.get("sum", 0.0)) for p in parts)
        s2 = math.fsum(float(p.get("sumsq", 0.0)) for p in parts)
        mins = [p["min"] for p in parts if p.get("min") is not None]
        maxs = [p["max"] for p in parts if p.get("max") is not None]
        mean = s1 / n if n else None
        out.update(
            count=n,
            mean=mean,
            std=math.sqrt(max(s2 / n - mean * mean, 0.0)) if n else None,
            min=min(mins) if mins else None,
            max=max(maxs) if maxs else None,
        )
    rows = out["observed"] + out["filled"] + out["missing"] + out["bad"]
    out["missing_fraction"] = (out["missing"] + out["bad"]) / rows if rows else None
    return out
