"""Training: windows of normal operation -> fitted detector -> ONNX graph -> :class:`Bundle`.

Split: rows are split in time, the first ``1 - validation_fraction`` fit the detector, the rest
(never seen by the fit) is the held-out normal validation split.

Threshold rule (no labels): ``threshold = quantile(holdout scores, 1 - false_alarm_target)``,
scores computed by the exported ONNX graph itself. On data like the training period the expected
false-alarm rate is ``false_alarm_target`` (default 1 %).

``kind="auto"``: each candidate (``pca``, ``zscore``, ``autoencoder``) is fitted, its threshold
set on the held-out split at the same false-alarm target, then the held-out rows are corrupted
with synthetic sensor faults (step offset of 3 sigma, ramp to 6 sigma, noise of 2 sigma, frozen
value) on a sample of signals, one at a time. The candidate with the highest mean detection rate
over these faults wins: equal false-alarm rate by construction, no labels needed. Ties (within
0.005) go to the earlier, cheaper candidate.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from models.bundle import FORMAT, Bundle
from models.detectors import KINDS, OPSET, Detector, fit
from models.errors import TrainingDataError
from models.features import fingerprint, infer_period_ns, to_frame, valid_windows, windows

AUTO_CANDIDATES = ("pca", "zscore", "autoencoder")
SYNTHETIC_FAULTS = ("offset", "ramp", "noise", "frozen")
THRESHOLD_RULE = "quantile(holdout_scores, 1 - false_alarm_target), holdout = last validation_fraction of rows in time"
MIN_FIT_WINDOWS = 20


def inject(rows: np.ndarray, j: int, fault: str, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``rows`` with one synthetic ``fault`` on column ``j``."""
    out = rows.copy()
    n = len(rows)
    if fault == "offset":
        out[:, j] += 3 * sigma
    elif fault == "ramp":
        out[:, j] += np.linspace(0, 6 * sigma, n)
    elif fault == "noise":
        out[:, j] += rng.normal(0, 2 * sigma, n)
    elif fault == "frozen":
        out[:, j] = rows[0, j]
    else:
        raise ValueError(fault)
    return out


def synthetic_detection(det: Detector, holdout: np.ndarray, threshold: float, *, seed: int = 0, max_signals: int = 8) -> dict[str, float]:
    """Mean detection rate (fraction of windows over ``threshold``) per synthetic fault type."""
    rng = np.random.default_rng(seed)
    holdout = holdout[:20_000]  # bounded cost on long tables
    s = holdout.shape[1]
    cols = rng.choice(s, size=min(s, max_signals), replace=False)
    sigma = holdout.std(axis=0)
    rates: dict[str, list[float]] = {f: [] for f in SYNTHETIC_FAULTS}
    for j in cols:
        for fault in SYNTHETIC_FAULTS:
            bad = inject(holdout, int(j), fault, float(sigma[j]) or 1.0, rng)
            sc, _ = det.score_numpy(windows(bad, det.window))
            rates[fault].append(float((sc > threshold).mean()))
    return {f: float(np.mean(v)) for f, v in rates.items()}


def train(
    data: Any,
    signals: list[str] | None = None,
    kind: str = "auto",
    time_column: str = "time",
    *,
    window: int = 5,
    hop: int = 1,
    false_alarm_target: float = 0.01,
    validation_fraction: float = 0.2,
    units: dict[str, str | None] | None = None,
    seed: int = 0,
    max_fit_windows: int = 200_000,
    **detector_opts: Any,
) -> Bundle:
    """Train an anomaly model on normal operation; see the module docstring for the rules."""
    if kind != "auto" and kind not in KINDS:
        raise ValueError(f"kind must be 'auto' or one of {KINDS}, got {kind!r}")
    if window < 1 or hop < 1:
        raise ValueError("window and hop must be >= 1")
    if not 0 < false_alarm_target < 0.5 or not 0 < validation_fraction < 0.9:
        raise ValueError("false_alarm_target must be in (0, 0.5) and validation_fraction in (0, 0.9)")
    t0 = time.perf_counter()
    frame = to_frame(data, signals, time_column, units=units)
    period = infer_period_ns(frame.times_ns)
    vals = frame.values
    n = len(vals)
    split = int(round(n * (1 - validation_fraction)))
    if split - window + 1 < MIN_FIT_WINDOWS or n - split < window + 1:
        raise TrainingDataError(
            f"too few rows to train: {n} rows; window {window} needs {MIN_FIT_WINDOWS + window - 1} rows in the "
            f"fitting split (first {1 - validation_fraction:.0%}) and {window + 1} held out"
        )
    ok = valid_windows(frame.times_ns, vals, window, period)
    ends = np.arange(len(ok)) + window - 1
    fit_idx = np.nonzero(ok & (ends < split))[0]
    if len(fit_idx) < MIN_FIT_WINDOWS:
        raise TrainingDataError(f"only {len(fit_idx)} complete windows in the fitting split (NaN gaps?); need {MIN_FIT_WINDOWS}")
    if len(fit_idx) > max_fit_windows:  # bounded memory: an evenly spaced subsample of the windows
        fit_idx = fit_idx[np.linspace(0, len(fit_idx) - 1, max_fit_windows).astype(np.int64)]
    all_w = windows(vals, window)
    x_fit = np.ascontiguousarray(all_w[fit_idx])
    fit_rows = vals[:split][~np.isnan(vals[:split]).any(axis=1)]
    hold = vals[split:]
    hold = hold[~np.isnan(hold).any(axis=1)]
    hold_idx = np.nonzero(ok & (ends - window + 1 >= split))[0]
    if len(hold_idx) > max_fit_windows:
        hold_idx = hold_idx[np.linspace(0, len(hold_idx) - 1, max_fit_windows).astype(np.int64)]
    x_hold = np.ascontiguousarray(all_w[hold_idx])
    if len(x_hold) < 2:
        raise TrainingDataError("the held-out validation split has no complete window")

    candidates = AUTO_CANDIDATES if kind == "auto" else (kind,)
    results: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Detector] = {}
    for c in candidates:
        tc = time.perf_counter()
        det = fit(c, x_fit, fit_rows, seed=seed, **detector_opts)
        hs, _ = det.score_numpy(x_hold)
        thr = float(np.quantile(hs, 1 - false_alarm_target))
        half = len(hs) // 2
        res: dict[str, Any] = {
            "holdout_threshold": thr,
            "fit_secs": round(time.perf_counter() - tc, 3),
            # threshold from the first half of the held-out split, false alarms on the second half
            "split_half_false_alarm_rate": float((hs[half:] > np.quantile(hs[:half], 1 - false_alarm_target)).mean()),
        }
        if kind == "auto":
            rates = synthetic_detection(det, hold, thr, seed=seed)
            res["synthetic_detection"] = rates
            res["synthetic_detection_mean"] = float(np.mean(list(rates.values())))
        results[c] = res
        fitted[c] = det
    if kind == "auto":
        best = max(results[c]["synthetic_detection_mean"] for c in candidates)
        chosen = next(c for c in candidates if results[c]["synthetic_detection_mean"] >= best - 0.005)
        reason = (
            f"highest mean synthetic-fault detection rate on the held-out normal split at equal false-alarm "
            f"target {false_alarm_target:g} ({results[chosen]['synthetic_detection_mean']:.3f}; "
            + ", ".join(f"{c}={results[c]['synthetic_detection_mean']:.3f}" for c in candidates)
            + ")"
        )
    else:
        chosen, reason = kind, "requested"
    det = fitted[chosen]
    onnx_bytes = det.to_onnx(doc=f"axedge {chosen} anomaly model")
    bundle = Bundle({}, onnx_bytes)
    bundle.meta = _meta(frame, det, period, hop, time_column, onnx_bytes, data)
    hold_scores, _ = bundle.run(x_hold)
    threshold = float(np.quantile(hold_scores.astype(np.float64), 1 - false_alarm_target))
    fit_scores, _ = bundle.run(x_fit)
    bundle.meta["threshold"] = {"value": threshold, "rule": THRESHOLD_RULE, "false_alarm_target": false_alarm_target}
    bundle.meta["validation"] = {
        "selection": {"chosen": chosen, "reason": reason, "candidates": results},
        "holdout_windows": int(len(x_hold)),
        "fit_windows": int(len(x_fit)),
        "holdout_score_quantiles": {q: float(np.quantile(hold_scores, float(q))) for q in ("0.5", "0.9", "0.99")},
        "fit_false_alarm_rate": float((fit_scores > threshold).mean()),
        "train_secs": round(time.perf_counter() - t0, 3),
    }
    return bundle


def _meta(frame, det: Detector, period: int, hop: int, time_column: str, onnx_bytes: bytes, data: Any) -> dict[str, Any]:
    from edge_agent import __version__

    return {
        "format": FORMAT,
        "kind": det.kind,
        "axedge_version": __version__,
        "onnx_opset": OPSET,
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "time_column": time_column,
        "inputs": [{"name": s, "unit": frame.units.get(s), "index": j} for j, s in enumerate(frame.signals)],
        "sampling_period_ns": period,
        "window": det.window,
        "hop": hop,
        "graph": {"input": "x [N, window, signals] float32 raw values", "outputs": ["score [N]", "contrib [N, signals]"]},
        "detector": det.info,
        "training": {
            "fingerprint_sha256": fingerprint(data),
            "rows": int(len(frame.times_ns)),
            "start_ns": int(frame.times_ns[0]),
            "end_ns": int(frame.times_ns[-1]),
        },
    }
