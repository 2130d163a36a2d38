"""The demo driver: write the embedded config, run the agent, describe the result."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from importlib import resources
from pathlib import Path


def _write_config(out: Path) -> Path:
    text = resources.files("edge_agent.demo").joinpath("synthetic.yaml").read_text(encoding="utf-8")
    cfg_path = out / "plant.yaml"
    out.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(text.replace("{out}", str(out.resolve())), encoding="utf-8")
    return cfg_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="axedge demo", description="Run the simulated plant and build a dataset.")
    p.add_argument("--duration-secs", type=float, default=30.0)
    p.add_argument("--out", default="demo-out")
    args = p.parse_args(argv)

    from dataset_builder.describe import describe, format_describe
    from edge_agent.config import load_config
    from edge_agent.logs import setup_logging
    from edge_agent.runtime.agent import Agent

    out = Path(args.out)
    cfg_path = _write_config(out)
    cfg = load_config(cfg_path)
    setup_logging("warning")
    print(f"axedge demo: running the simulated plant for {args.duration_secs:g} s (config: {cfg_path})", flush=True)
    res = asyncio.run(Agent(cfg, config_path=cfg_path).run(args.duration_secs, install_signals=True))
    data = Path(cfg.agent.data_dir)
    print(json.dumps({"received": res.received, "committed": res.committed, "dropped": res.dropped, "errors": res.errors}))
    print(format_describe(describe(data)))
    print(
        "\nOpen it:\n"
        f"  pandas:  pd.read_parquet('{data}/raw')\n"
        f"  DuckDB:  SELECT * FROM read_parquet('{data}/raw/**/*.parquet', hive_partitioning=true)\n"
        f"  axedge:  axedge dataset describe {data}\n"
    )
    return 0 if res.committed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
