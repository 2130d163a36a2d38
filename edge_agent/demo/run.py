"""``axedge demo`` (what ``make demo`` runs): the plant in a box, see :mod:`edge_agent.demo.plant`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="axedge demo", description="Run the simulated plant (Modbus casting line, OPC UA "
                                "machine tool, MQTT sensors), score live with anomaly models while faults are injected, "
                                "and build the datasets.")
    p.add_argument("--duration-secs", type=float, default=60.0, help="total run time (learning + watching)")
    p.add_argument("--out", default="demo-out", help="output folder (raw and curated datasets, models, report)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-dashboard", action="store_true", help="no live dashboard (logs only)")
    p.add_argument("--train", action="store_true",
                   help="learn for the first 55 %% of the run and train the models on it, instead of loading the "
                        "models bundled for the simulators (use --duration-secs 300 or more: short learning "
                        "gives models that alarm on normal operation)")
    args = p.parse_args(argv)

    from edge_agent.demo.plant import run_plant
    from edge_agent.logs import setup_logging

    setup_logging("warning")
    for noisy in ("asyncua", "amqtt", "pymodbus", "transitions", "hardware"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    out = Path(args.out)
    res = asyncio.run(run_plant(out, args.duration_secs, seed=args.seed, show=not args.no_dashboard, train=args.train))
    data = res["raw"]
    print()
    print(f"raw dataset      {data}")
    print(f"curated dataset  {res['curated']}  ({res['curated_rows']:,} rows, with ground-truth labels)")
    print(f"report           {res['report']}  (open in a browser; works offline)")
    print(f"anomaly table    {res['anomalies']}")
    print(f"models           {res['models']}")
    for ev in res["events"]:
        print(f"  anomaly {ev['start']}-{ev['end']} {ev['model']:<8} top: {ev['top_signals']:<50} "
              f"injected: {ev['matches_injected_fault'] or '-'}")
    print(
        "\nOpen it:\n"
        f"  pandas:  pd.read_parquet('{data}/raw')\n"
        f"  DuckDB:  SELECT * FROM read_parquet('{data}/raw/**/*.parquet', hive_partitioning=true)\n"
        f"  curated: pd.read_parquet('{res['curated']}/curated')\n"
        f"  axedge:  axedge dataset describe {data}\n"
    )
    summary = {k: v for k, v in res.items() if k != "events"}
    summary["anomaly_events"] = len(res["events"])
    summary["events_matching_injected_faults"] = sum(1 for e in res["events"] if e["matches_injected_fault"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
