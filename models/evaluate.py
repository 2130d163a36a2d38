"""Evaluation against labels: point-wise and event-level metrics.

Point-wise: precision, recall, F1, false-alarm rate (alarms on normal rows / normal rows) and
missed-alarm rate (unalarmed anomalous rows / anomalous rows). Always read F1 with the false-alarm
rate: a detector that flags everything scores a high F1 on fault-heavy data.

Event-level: each run of consecutive labelled rows is one event; it is detected when an alarm
falls inside it, with the delay from the event start to the first alarm (rows and seconds).
Alarm runs that touch no event are counted as false-alarm events.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True as ``(start, end)`` index pairs, ``end`` inclusive."""
    m = np.asarray(mask, dtype=bool).astype(np.int8)
    d = np.diff(np.concatenate(([0], m, [0])))
    starts = np.nonzero(d == 1)[0]
    ends = np.nonzero(d == -1)[0] - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def pointwise(alarm: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    a = np.asarray(alarm, dtype=bool)
    y = np.asarray(label, dtype=bool)
    tp = int((a & y).sum())
    fp = int((a & ~y).sum())
    fn = int((~a & y).sum())
    tn = int((~a & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_alarm_rate": fp / (fp + tn) if fp + tn else 0.0,
        "missed_alarm_rate": fn / (tp + fn) if tp + fn else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def event_level(alarm: np.ndarray, label: np.ndarray, times_ns: np.ndarray | None = None) -> dict[str, Any]:
    a = np.asarray(alarm, dtype=bool)
    events = runs(np.asarray(label, dtype=bool))
    delays, delays_s = [], []
    for s, e in events:
        hit = np.nonzero(a[s : e + 1])[0]
        if len(hit):
            delays.append(int(hit[0]))
            if times_ns is not None:
                delays_s.append(float(times_ns[s + hit[0]] - times_ns[s]) / 1e9)
    y = np.asarray(label, dtype=bool)
    false_events = sum(1 for s, e in runs(a) if not y[s : e + 1].any())
    out: dict[str, Any] = {
        "events": len(events),
        "detected": len(delays),
        "detection_rate": len(delays) / len(events) if events else 0.0,
        "mean_delay_rows": float(np.mean(delays)) if delays else None,
        "false_alarm_events": false_events,
    }
    if times_ns is not None:
        out["mean_delay_secs"] = float(np.mean(delays_s)) if delays_s else None
    return out


def labels_from(values: Any, positive: str | None = None) -> np.ndarray:
    """Boolean labels from a column: numbers/bools are anomalous when non-zero; text when equal
    to ``positive`` (case-insensitive), or one of 1/true/yes/anomaly/fault/worn without it."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        return np.nan_to_num(arr.astype(np.float64)) != 0
    text = np.char.lower(arr.astype(str))
    if positive is not None:
        return text == positive.lower()
    return np.isin(text, ["1", "true", "yes", "anomaly", "fault", "worn"])


def evaluate(bundle, data: Any, label_column: str, *, time_column: str | None = None, positive: str | None = None) -> dict[str, Any]:
    """Score ``data`` with ``bundle`` and compare the alarms with ``label_column``. Rows without a
    score (incomplete window, missing input) count as no alarm and are reported."""
    from models.features import as_arrow

    table = as_arrow(data)
    if label_column not in table.column_names:
        raise KeyError(f"no label column {label_column!r}")
    labels = labels_from(table.column(label_column).to_numpy(zero_copy_only=False), positive)
    scored = bundle.score(table.drop_columns([label_column]), time_column=time_column)
    if scored.num_rows != len(labels):
        raise ValueError("evaluation needs a wide table (one row per timestamp) in time order")
    tc = time_column or bundle.meta.get("time_column", "time")
    order = np.argsort(np.asarray(table.column(tc).to_numpy(zero_copy_only=False)), kind="stable")
    labels = labels[order]
    alarm = scored.column("anomaly").to_numpy(zero_copy_only=False)
    score = scored.column("score").to_numpy(zero_copy_only=False)
    times = scored.column("time").cast("int64").to_numpy(zero_copy_only=False)
    return {
        "rows": int(len(labels)),
        "unscored_rows": int(np.isnan(score).sum()),
        "threshold": bundle.threshold,
        "pointwise": pointwise(alarm, labels),
        "events": event_level(alarm, labels, times),
    }
