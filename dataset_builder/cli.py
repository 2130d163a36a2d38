"""``axedge dataset build | import-csv | report | export``: the dataset builder's command line.

The agent's CLI hands ``axedge dataset <subcommand> ...`` to :func:`main`; it also runs alone as
``python -m dataset_builder.cli``. Exit codes: 0 ok, 1 a dataset problem (message on stderr),
2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from dataset_builder.format import DatasetError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="axedge dataset", description="Build, import, report and share axedge datasets.")
    sub = p.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    b = sub.add_parser("build", help="build the curated (AI-ready) layer from a raw dataset")
    b.add_argument("raw", type=Path, help="raw dataset root (holds raw/ and _axedge/)")
    b.add_argument("--out", type=Path, required=True, help="output directory")
    b.add_argument("--assets", nargs="+", help="asset paths, partition values or globs (default: all)")
    b.add_argument("--period", default="1s", help="grid period, e.g. 100ms, 1s, 1min (default 1s)")
    b.add_argument("--from", dest="start", help="start time (ISO 8601, UTC if no offset)")
    b.add_argument("--to", dest="end", help="end time, exclusive")
    b.add_argument("--fill-limit", help="forward-fill at most this long (default 5 periods)")
    b.add_argument("--agg", action="append", default=[], metavar="GLOB=FUNC",
                   help="aggregation per signal name/key glob: last first mean min max sum (repeatable)")
    b.add_argument("--cycles", metavar="SIGNAL[:counter|state[:V1,V2]]",
                   help="segment cycles on this signal (counter, or state with active values)")
    b.add_argument("--max-cycle", default="1h", help="longest cycle followed across a day's edge (default 1h)")
    b.add_argument("--events", action="append", default=[], type=Path, help="ground-truth events (JSON lines)")
    b.add_argument("--labels", action="append", default=[], type=Path, help="user labels (JSON lines or CSV)")
    b.add_argument("--split", default="0.7,0.15,0.15", help="train,validation,test fractions by time")
    b.add_argument("--embargo", help="no-split margin after each split boundary (default max(fill limit, 60 periods))")
    b.add_argument("--engine", choices=["local", "spark"], default="local")
    b.add_argument("--workers", type=int, help="local engine: processes (default: CPU count)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing curated layer in --out")
    b.add_argument("--license", default="other", help="licence recorded in the card and Croissant")
    b.add_argument("--description", help="dataset description for the card")

    i = sub.add_parser("import-csv", help="import CSV logs into a raw dataset")
    i.add_argument("files", nargs="+", type=Path)
    i.add_argument("--mapping", type=Path, required=True, help="mapping YAML (see examples/mappings/)")
    i.add_argument("--out", type=Path, required=True, help="raw dataset root (created or appended)")

    r = sub.add_parser("report", help="write a self-contained HTML report of a curated dataset")
    r.add_argument("dir", type=Path)
    r.add_argument("--out", type=Path, help="HTML file (default DIR/report.html)")

    e = sub.add_parser("export", help="export a curated dataset under a sharing policy")
    e.add_argument("src", type=Path)
    e.add_argument("--policy", type=Path, required=True, help="sharing policy YAML")
    e.add_argument("--out", type=Path, required=True, help="new directory")
    return p


def _cycles(text: str | None) -> dict | None:
    if not text:
        return None
    parts = text.split(":")
    spec = {"signal": parts[0], "mode": parts[1] if len(parts) > 1 else "counter"}
    if len(parts) > 2:
        spec["active"] = [yaml.safe_load(v) for v in parts[2].split(",")]
    return spec


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    try:
        if args.command == "build":
            from dataset_builder.curate import build

            aggs = dict(a.split("=", 1) for a in args.agg)
            fractions = tuple(float(x) for x in args.split.split(","))
            res = build(args.raw, args.out, assets=args.assets, period=args.period, start=args.start, end=args.end,
                        fill_limit=args.fill_limit, aggregations=aggs, cycles=_cycles(args.cycles),
                        max_cycle=args.max_cycle,
                        events=args.events, labels=args.labels, split_fractions=fractions, embargo=args.embargo,
                        engine=args.engine, workers=args.workers, overwrite=args.overwrite, license=args.license,
                        description=args.description)
            m = res.metadata
            print(json.dumps({"out": str(res.out), "rows": res.rows, "partitions": len(res.partitions),
                              "signals": len(m["signals"]), "time_range": m["time_range"], "issues": m["issues"]}))
        elif args.command == "import-csv":
            from dataset_builder.importer import import_csv

            res = import_csv(args.files, args.mapping, args.out)
            print(json.dumps({"out": str(args.out), "samples": res.rows, "signals": res.signals,
                              "empty_cells": res.empty_cells, "files": res.files}))
        elif args.command == "report":
            from dataset_builder.report import write

            print(write(args.dir, args.out))
        elif args.command == "export":
            from dataset_builder.share import export

            doc = export(args.src, args.policy, args.out)
            print(json.dumps({"out": str(args.out), "rows": doc["rows"], "signals": len(doc["signals"]),
                              "sharing": doc["sharing"]}))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
