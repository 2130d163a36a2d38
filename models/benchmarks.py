"""Benchmark tables for ``docs/anomaly-benchmarks.md`` on public data nobody here produced.

``python -m models.benchmarks [--data ../shared/data] [--only tep,cnc,nab]`` prints Markdown.
Development tool: the product never reads these datasets.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from models.evaluate import event_level, pointwise
from models.train import train

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TEP_FAULT_START = 160  # test runs: fault introduced after sample 160
EQUAL_FAR = 0.05


def _tep(data: Path, name: str) -> pd.DataFrame:
    a = np.loadtxt(data / "tep" / f"{name}.dat")
    if name == "d00":
        a = a.T
    df = pd.DataFrame(a, columns=[f"xmeas_{i + 1}" if i < 41 else f"xmv_{i - 40}" for i in range(52)])
    df.insert(0, "time", pd.date_range("2024-01-01", periods=len(df), freq="3min", tz="UTC"))
    return df


def tep_detectors() -> dict[str, dict]:
    """Name -> train() arguments. ``pca_t2 (w=1)`` is the classic static baseline."""
    return {
        "pca_t2 (w=1)": {"kind": "pca_t2", "window": 1},
        "zscore (w=5)": {"kind": "zscore", "window": 5},
        "pca_t2 (w=5)": {"kind": "pca_t2", "window": 5},
        "pca T2+Q (w=5)": {"kind": "pca", "window": 5},
        "autoencoder (w=5)": {"kind": "autoencoder", "window": 5},
        "default: auto (w=5)": {"kind": "auto"},
    }


def run_tep(data: Path) -> str:
    train_df = _tep(data, "d00")
    normal = _tep(data, "d00_te")
    faults = {i: _tep(data, f"d{i:02d}_te") for i in range(1, 22)}
    rows = []
    per_fault: dict[str, list[float]] = {}
    for name, kw in tep_detectors().items():
        t0 = time.perf_counter()
        b = train(train_df, **kw)
        secs = time.perf_counter() - t0
        s0 = b.score(normal)["score"].to_numpy()
        s0 = s0[~np.isnan(s0)]
        far_bundle = float((s0 > b.threshold).mean())
        thr_eq = float(np.quantile(s0, 1 - EQUAL_FAR))
        dr_b, dr_eq, delays = [], [], []
        for _i, df in faults.items():
            sc = b.score(df)["score"].to_numpy()[TEP_FAULT_START:]
            dr_b.append(float((sc > b.threshold).mean()))
            dr_eq.append(float((sc > thr_eq).mean()))
            ev = event_level(sc > b.threshold, np.ones(len(sc), bool))
            delays.append(ev["mean_delay_rows"])
        per_fault[name] = dr_eq
        d_ok = [d for d in delays if d is not None]
        rows.append(
            f"| {name} | {b.kind} | {far_bundle:.3f} | {np.mean(dr_b):.3f} | {float((s0 > thr_eq).mean()):.3f} | "
            f"{np.mean(dr_eq):.3f} | {np.median(d_ok) * 3:.0f} | {secs:.1f} |"
        )
    out = [
        "### Tennessee Eastman (train `d00.dat`, FAR on `d00_te.dat`, faults `d01_te`..`d21_te` after sample 160)",
        "",
        "| detector | kind | FAR @ bundle threshold | avg DR @ bundle threshold | FAR (equal) | avg DR @ equal FAR | median delay (min) @ bundle thr. | train s |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Per-fault detection rate at an equal false-alarm rate of {EQUAL_FAR:.0%} on the normal test run "
        "(each detector's threshold set to the 95th percentile of its scores on `d00_te`):",
        "",
        "| fault | " + " | ".join(per_fault) + " |",
        "|---" * (len(per_fault) + 1) + "|",
    ]
    for i in range(21):
        out.append(f"| {i + 1} | " + " | ".join(f"{v[i]:.2f}" for v in per_fault.values()) + " |")
    out.append("| **mean** | " + " | ".join(f"**{np.mean(v):.3f}**" for v in per_fault.values()) + " |")
    return "\n".join(out)


CNC_UNWORN_TRAIN = (1, 2, 3, 11)


def _cnc(data: Path) -> pd.DataFrame:
    parts = []
    for i in range(1, 19):
        df = pd.read_csv(data / "cnc_mill_tool_wear" / "data" / f"experiment_{i:02d}.csv")
        df = df.drop(columns=[c for c in df.columns if c.startswith("Unnamed")])
        # one clock per experiment, 100 ms samples, a day apart so no window spans two runs
        df.insert(0, "time", pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=i) + pd.to_timedelta(np.arange(len(df)) * 100, unit="ms"))
        df["experiment"] = i
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def run_cnc(data: Path) -> str:
    df = _cnc(data)
    df = df[df["Machining_Process"].str.startswith("Layer")]  # cutting rows only
    signals = [
        c for c in df.columns
        if c.split("_")[0] in ("X1", "Y1", "Z1", "S1") and df[c].std() > 0 and "Command" not in c
    ]
    train_df = df[df["experiment"].isin(CNC_UNWORN_TRAIN)][["time", *signals]]
    test = df[~df["experiment"].isin(CNC_UNWORN_TRAIN)]
    y = (test["tool_condition"] == "worn").to_numpy()
    rows, runs_rows = [], []
    for kind in ("pca_t2", "zscore", "pca", "autoencoder", "auto"):
        b = train(train_df, kind=kind, window=5 if kind != "pca_t2" else 1)
        sc = b.score(test[["time", *signals]])
        alarm = sc["anomaly"].to_numpy()
        m = pointwise(alarm, y)
        # run level: a run is called worn when more of its rows alarm than in any unworn training run
        tr_alarm = b.score(train_df)["anomaly"].to_numpy()
        cut = max(float(tr_alarm[train_df["time"].dt.day.to_numpy() == d].mean()) for d in np.unique(train_df["time"].dt.day))
        frac = pd.Series(alarm).groupby(test["experiment"].to_numpy()).mean()
        worn = test.groupby("experiment")["tool_condition"].first() == "worn"
        called = frac > cut
        acc = float((called == worn).mean())
        rows.append(
            f"| {kind} ({b.kind}, w={b.window}) | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['false_alarm_rate']:.3f} | {m['missed_alarm_rate']:.3f} | {acc:.2f} ({int((called & worn).sum())}/{int(worn.sum())} worn, "
            f"{int((called & ~worn).sum())}/{int((~worn).sum())} unworn flagged) |"
        )
        if kind == "auto":
            runs_rows = [f"| {e} | {'worn' if worn[e] else 'unworn'} | {frac[e]:.3f} |" for e in frac.index]
    return "\n".join(
        [
            f"### CNC milling tool wear (train on unworn runs {list(CNC_UNWORN_TRAIN)}, cutting rows only, {len(signals)} signals)",
            "",
            "Point-wise labels: every row of a worn-tool run is anomalous. Run-level call: a run is "
            "`worn` when its alarm fraction exceeds the largest alarm fraction of any training run.",
            "",
            "| detector | precision | recall | F1 | FAR (unworn test rows) | missed | run-level accuracy |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Alarm fraction per test run (default detector):",
            "",
            "| experiment | tool | alarm fraction |",
            "|---|---|---|",
            *runs_rows,
        ]
    )


def run_nab(data: Path) -> str:
    name = "realKnownCause/machine_temperature_system_failure.csv"
    df = pd.read_csv(data / "nab" / "data" / name, parse_dates=["timestamp"])
    df = df.rename(columns={"timestamp": "time", "value": "temperature"})
    df["time"] = df["time"].dt.tz_localize("UTC")
    wins = json.loads((data / "nab" / "labels" / "combined_windows.json").read_text())[name]
    y = np.zeros(len(df), bool)
    for a, b in wins:
        y |= ((df["time"] >= pd.Timestamp(a, tz="UTC")) & (df["time"] <= pd.Timestamp(b, tz="UTC"))).to_numpy()
    first = int(np.argmax(y))
    train_df = df.iloc[:first]
    rows = []
    for kind in ("zscore", "pca", "autoencoder", "auto"):
        for window in (12, 36):
            b = train(train_df, kind=kind, window=window)
            sc = b.score(df)
            alarm = sc["anomaly"].to_numpy()
            m = pointwise(alarm[first:], y[first:])
            e = event_level(alarm, y, sc["time"].astype("int64").to_numpy())
            delay = f"{e['mean_delay_secs'] / 3600:.1f}" if e["mean_delay_secs"] is not None else "-"
            rows.append(
                f"| {kind} ({b.kind}) | {window} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['false_alarm_rate']:.3f} | "
                f"{e['detected']}/{e['events']} | {delay} | {e['false_alarm_events']} |"
            )
    return "\n".join(
        [
            f"### NAB `machine_temperature_system_failure` (train on the {first} rows before the first labelled window; "
            "point-wise metrics on the rows after it)",
            "",
            "| detector | window (5-min rows) | precision | recall | F1 | FAR | windows detected | mean delay (h) | false-alarm events |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


SIM_SIGNALS = ("melt_temperature", "ladle_weight", "pouring_rate", "stopper_position", "mould_temperature", "cooling_water_temperature", "ladle_tilt")
SIM_FAULTS = (
    ("thermocouple_drift", {"tc_drift_rate": 0.05}),
    ("stopper_sticking", {"stopper_sticky": True}),
    ("melt_temperature_drop", {"melt_drop_rate": 0.3}),
    ("sensor_stuck", {"stuck": "mould_temperature"}),
)


def _sim_run(seconds: int, seed: int, faults: bool) -> tuple[pd.DataFrame, np.ndarray, list[tuple[str, int, int]]]:
    """The casting-line process model (``hardware.casting_line``) stepped at 1 s; with ``faults``
    one fault of each kind for 5 minutes every 30 minutes, with the simulator's own fault effects."""
    import random

    from hardware.casting_line import CastingLineModel

    m = CastingLineModel(rng=random.Random(seed))
    rows, label, truth = [], np.zeros(seconds, bool), []
    active = None
    for t in range(seconds):
        if faults and t % 1800 == 900:
            kind, effect = SIM_FAULTS[(t // 1800) % len(SIM_FAULTS)]
            active = (kind, effect, t)
            for k, v in effect.items():
                if k == "stuck":
                    m.stuck[v] = m.readings()[v]
                else:
                    setattr(m, k, v)
        if active and t == active[2] + 300:
            kind, effect, start = active
            m.tc_drift_rate = m.tc_drift = m.melt_drop_rate = 0.0
            m.stopper_sticky = False
            m.stuck.clear()
            truth.append((kind, start, t - 1))
            active = None
        label[t] = active is not None
        m.step(1.0)
        r = m.readings()
        rows.append([float(r[s]) for s in SIM_SIGNALS])
    df = pd.DataFrame(rows, columns=list(SIM_SIGNALS))
    df.insert(0, "time", pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(seconds), unit="s"))
    return df, label, truth


def run_sim(data: Path) -> str:
    train_df, _, _ = _sim_run(4 * 3600, seed=1, faults=False)
    test_df, label, truth = _sim_run(4 * 3600, seed=2, faults=True)
    rows = []
    for kind in ("zscore", "pca", "autoencoder", "auto"):
        b = train(train_df, kind=kind, window=10)
        alarm = b.score(test_df)["anomaly"].to_numpy()
        m = pointwise(alarm, label)
        per = {}
        for k, s, e in truth:
            hit = np.nonzero(alarm[s : e + 1])[0]
            per.setdefault(k, []).append(int(hit[0]) if len(hit) else None)
        cells = []
        for k, _ in SIM_FAULTS:
            d = per.get(k, [])
            found = [x for x in d if x is not None]
            cells.append(f"{len(found)}/{len(d)}" + (f" ({np.mean(found):.0f} s)" if found else ""))
        rows.append(f"| {kind} ({b.kind}) | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['false_alarm_rate']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            "### Casting-line simulator ground truth (process model of `hardware/casting_line.py`, 1 s samples, "
            f"{len(SIM_SIGNALS)} analog signals, train 4 h normal, test 4 h with a 5-min fault every 30 min, window 10 s)",
            "",
            "| detector | precision | recall | F1 | FAR | " + " | ".join(f"{k} detected (mean delay)" for k, _ in SIM_FAULTS) + " |",
            "|---|---|---|---|---|" + "---|" * len(SIM_FAULTS),
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--only", default="tep,cnc,nab,sim")
    args = ap.parse_args(argv)
    runners = {"tep": run_tep, "cnc": run_cnc, "nab": run_nab, "sim": run_sim}
    for key in args.only.split(","):
        t0 = time.perf_counter()
        print(runners[key](args.data.resolve()))
        print(f"\n_{key}: {time.perf_counter() - t0:.0f} s_\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
