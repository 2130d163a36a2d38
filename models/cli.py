"""``axedge model ...``: train, score and evaluate anomaly models from the command line.

::

    axedge model train DATA --out DIR [--kind auto|zscore|pca|pca_t2|autoencoder] [--signals A B ...]
    axedge model score MODEL DATA --out FILE          (.parquet or .csv)
    axedge model eval  MODEL DATA --label-column COL  [--positive VALUE] [--out FILE.json]

DATA is a CSV file, a Parquet file or a Parquet directory (an axedge dataset's ``raw`` folder is
read in its long ``time, signal, value`` layout and pivoted onto the sampling grid).
Exit codes: 0 ok, 2 bad input (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.detectors import KINDS


def read_data(path: str | Path):
    """A pyarrow Table from a CSV file, a Parquet file or a directory of Parquet files."""
    import pyarrow as pa

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if p.is_file() and p.suffix.lower() in (".csv", ".txt"):
        from pyarrow import csv

        return csv.read_csv(p)
    import pyarrow.dataset as ds

    table = ds.dataset(p, format="parquet", partitioning="hive").to_table()
    # dictionary-encoded columns (signal keys, partitions) as plain strings
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.table(cols, names=table.column_names)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="axedge model", description="Train, score and evaluate anomaly models.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a model on normal operation and write a bundle directory")
    t.add_argument("data")
    t.add_argument("--out", required=True, help="bundle directory (model.onnx + model.json)")
    t.add_argument("--kind", default="auto", choices=["auto", *KINDS])
    t.add_argument("--signals", nargs="+", default=None, help="input columns (default: every numeric column)")
    t.add_argument("--time-column", default="time")
    t.add_argument("--window", type=int, default=5, help="window length in sampling periods")
    t.add_argument("--hop", type=int, default=1, help="windows scored every HOP periods at the edge")
    t.add_argument("--false-alarm-target", type=float, default=0.01)
    s = sub.add_parser("score", help="score data with a bundle")
    s.add_argument("model")
    s.add_argument("data")
    s.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    s.add_argument("--contributions", action="store_true", help="add one contrib.<signal> column per input")
    e = sub.add_parser("eval", help="evaluate a bundle against a label column")
    e.add_argument("model")
    e.add_argument("data")
    e.add_argument("--label-column", required=True)
    e.add_argument("--positive", default=None, help="label value meaning anomalous (text labels)")
    e.add_argument("--out", default=None, help="also write the JSON report here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import pyarrow as pa

    import models
    from models.errors import ModelError

    try:
        if args.cmd == "train":
            b = models.train(
                read_data(args.data),
                signals=args.signals,
                kind=args.kind,
                time_column=args.time_column,
                window=args.window,
                hop=args.hop,
                false_alarm_target=args.false_alarm_target,
            )
            b.save(args.out)
            sel = b.meta["validation"]["selection"]
            print(f"trained {b.kind} on {len(b.signals)} signals, window {b.window}, threshold {b.threshold:.6g} -> {args.out}")
            print(f"choice: {sel['reason']}")
        elif args.cmd == "score":
            b = models.load(args.model)
            out = b.score(read_data(args.data), contributions=args.contributions)
            dest = Path(args.out)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.suffix.lower() == ".csv":
                from pyarrow import csv

                csv.write_csv(out, dest)
            else:
                import pyarrow.parquet as pq

                pq.write_table(out, dest)
            alarms = pa.compute.sum(out.column("anomaly")).as_py() or 0
            print(f"scored {out.num_rows} rows, {alarms} anomalous -> {dest}")
        else:
            from models.evaluate import evaluate

            b = models.load(args.model)
            report = evaluate(b, read_data(args.data), args.label_column, positive=args.positive)
            text = json.dumps(report, indent=2)
            print(text)
            if args.out:
                Path(args.out).write_text(text)
    except (ModelError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"axedge model {args.cmd}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
