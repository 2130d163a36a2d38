"""Dataset builder benchmark: import, curated build (resampling) and sharing export, against a
straightforward pandas resample of the same data. Prints one JSON document.

    .venv/bin/python bench/dataset.py                       # 200 signals, 1 Hz, 7 days (121 M samples)
    .venv/bin/python bench/dataset.py --days 1 --signals 50 # quick

Phases run in child processes so each reports its own peak RSS (``ru_maxrss`` from ``wait4``:
the largest of the process and the workers it waited for). The generated wide CSV files (one per
day, time in epoch seconds) are imported with ``import-csv`` into a raw dataset (signals spread
over 4 assets); ``build`` resamples it onto the ``--period`` grid with the local process pool;
``export`` applies a policy that pseudonymises, quantises and adds noise. The pandas baseline
reads the raw layer into one DataFrame, pivots it wide and calls ``resample().mean()`` with a
forward fill: it runs under an address-space limit (``--pandas-mem-gb``) so that running out of
memory shows as a MemoryError instead of waking the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DAY0 = 1_767_225_600  # 2026-01-01T00:00:00Z
ASSETS = 4


def _generate(work: Path, signals: int, days: int, hz: int) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(42)
    csv_dir = work / "csv"
    csv_dir.mkdir(parents=True, exist_ok=True)
    names = [f"s{i:03d}" for i in range(signals)]
    level = rng.normal(50, 10, signals)
    n = 86_400 * hz
    t_start = time.perf_counter()
    for d in range(days):
        t = DAY0 + d * 86_400 + np.arange(n) / hz
        cols = {"ts": pa.array(t)}
        steps = rng.normal(0, 0.05, (n, signals)).astype(np.float32)
        walk = level + np.cumsum(steps, axis=0, dtype=np.float64)
        level = walk[-1]
        for i, name in enumerate(names):
            cols[name] = pa.array(np.round(walk[:, i], 3))
        pacsv.write_csv(pa.table(cols), csv_dir / f"day{d}.csv")
    mapping = {"asset": "bench/plant1/line1/m0", "time": {"column": "ts", "format": "epoch_s"},
               "signals": {nm: {"name": nm, "unit": "degC", "asset": f"bench/plant1/line1/m{i % ASSETS}"}
                           for i, nm in enumerate(names)}}
    (work / "mapping.json").write_text(json.dumps(mapping))
    size = sum(p.stat().st_size for p in csv_dir.iterdir())
    return {"csv_bytes": size, "secs": round(time.perf_counter() - t_start, 2)}


def phase(name: str, work: Path, args: argparse.Namespace) -> dict:
    """Run in the child process."""
    if name == "import":
        import yaml

        from dataset_builder.importer import Mapping, import_csv

        m = Mapping.model_validate(yaml.safe_load((work / "mapping.json").read_text()))
        files = sorted((work / "csv").glob("*.csv"), key=lambda p: int(p.stem[3:]))
        t = time.perf_counter()
        res = import_csv(files, m, work / "raw")
        return {"samples": res.rows, "secs": time.perf_counter() - t}
    if name == "build":
        from dataset_builder.curate import build

        t = time.perf_counter()
        res = build(work / "raw", work / "curated", period=args.period, workers=args.workers, embargo="0s",
                    overwrite=True)
        return {"grid_rows": res.rows, "secs": time.perf_counter() - t,
                "raw_rows": res.metadata["issues"]["raw_rows"], "partitions": len(res.partitions)}
    if name == "export":
        from dataset_builder.share import Policy, export

        pol = Policy(key="bench-key-0123456789abcdef", time="relative",
                     signals=[{"match": "s00*", "drop": True}, {"match": "s1*", "pseudonymise": True, "quantise": 0.1},
                              {"match": "s2*", "noise": 0.01}])
        shutil.rmtree(work / "shared", ignore_errors=True)
        t = time.perf_counter()
        doc = export(work / "curated", pol, work / "shared")
        return {"grid_rows": doc["rows"], "secs": time.perf_counter() - t}
    if name == "pandas":
        import pandas as pd

        t = time.perf_counter()
        df = pd.read_parquet(work / "raw" / "raw", columns=["time", "signal", "value"])
        wide = df.pivot_table(index="time", columns="signal", values="value", aggfunc="mean", observed=True)
        out = wide.resample(args.period).mean().ffill(limit=5)
        return {"raw_rows": len(df), "grid_rows": len(out), "columns": out.shape[1], "secs": time.perf_counter() - t}
    raise ValueError(name)


def run_child(name: str, work: Path, argv: list[str], mem_gb: float | None = None) -> dict:
    def limit():
        if mem_gb:
            lim = int(mem_gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    out = work / f"{name}.json"
    p = subprocess.Popen([sys.executable, __file__, "--phase", name, "--work", str(work), *argv], preexec_fn=limit)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    res = json.loads(out.read_text()) if out.exists() and p.returncode == 0 else {"error": f"exit {p.returncode}"}
    if out.exists() and p.returncode != 0:
        res = json.loads(out.read_text())
    res["peak_rss_mb"] = round(ru.ru_maxrss / 1024, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--signals", type=int, default=200)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--hz", type=int, default=1)
    ap.add_argument("--period", default="10s")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--pandas-mem-gb", type=float, default=12.0)
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        try:
            res = phase(args.phase, args.work, args)
        except MemoryError:
            res = {"error": "MemoryError"}
            (args.work / f"{args.phase}.json").write_text(json.dumps(res))
            sys.exit(3)
        (args.work / f"{args.phase}.json").write_text(json.dumps(res))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="axedge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    argv = ["--period", args.period] + (["--workers", str(args.workers)] if args.workers else [])
    try:
        gen = _generate(work, args.signals, args.days, args.hz)
        report = {"config": {"signals": args.signals, "days": args.days, "hz": args.hz, "period": args.period,
                             "workers": args.workers or os.cpu_count(), "cpus": os.cpu_count(),
                             "samples": args.signals * args.days * 86_400 * args.hz},
                  "generate": gen}
        imp = run_child("import", work, argv)
        imp["samples_per_s"] = round(imp["samples"] / imp["secs"]) if "samples" in imp else None
        report["import"] = imp
        b = run_child("build", work, argv)
        if "secs" in b:
            b["raw_rows_per_s"] = round(b["raw_rows"] / b["secs"])
            b["grid_rows_per_s"] = round(b["grid_rows"] / b["secs"])
        report["build"] = b
        e = run_child("export", work, argv)
        if "secs" in e:
            e["grid_rows_per_s"] = round(e["grid_rows"] / e["secs"])
        report["export"] = e
        if not args.skip_pandas:
            pd_ = run_child("pandas", work, argv, mem_gb=args.pandas_mem_gb)
            if "secs" in pd_:
                pd_["raw_rows_per_s"] = round(pd_["raw_rows"] / pd_["secs"])
                if "secs" in b:
                    report["build_vs_pandas"] = {"speedup": round(pd_["secs"] / b["secs"], 2),
                                                 "rss_ratio": round(pd_["peak_rss_mb"] / b["peak_rss_mb"], 2)}
            pd_["mem_limit_gb"] = args.pandas_mem_gb
            report["pandas_resample"] = pd_
        report["raw_bytes"] = sum(p.stat().st_size for p in (work / "raw").rglob("*.parquet"))
        report["curated_bytes"] = sum(p.stat().st_size for p in (work / "curated").rglob("*.parquet"))
        for k in ("import", "build", "export", "pandas_resample"):
            if k in report and "secs" in report[k]:
                report[k]["secs"] = round(report[k]["secs"], 2)
        print(json.dumps(report, indent=1))
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
