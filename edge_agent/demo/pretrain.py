"""Train the anomaly models bundled with the demo (``edge_agent/demo/models``).

The demo's own learning phase (``axedge demo --train``) sees about half a minute of each machine:
less than one ladle cycle of the casting line (about 56 pours between refills, ~105 s at the
demo's speed), so its models alarm on normal operation. These bundles are trained the same way
(the same simulators at the same speeds, the same plant config, collected by the agent over the
real protocols, curated onto the 200 ms grid, ``models.train(kind="auto")``) but on several
minutes of normal operation, with a larger held-out share for the threshold. The plant is started
several times (one seed each) because a machine's start-up (the coolant warming up over the first
cycles) is normal operation too and the demo watches from its start. Seeds other than the demo's
default keep the demo an out-of-sample check.

    .venv/bin/python -m edge_agent.demo.pretrain [--secs 180] [--seeds 7 8 9] [--out edge_agent/demo/models]

Then check them with ``bench/demo_ground_truth.py`` (false alarms and detections on other seeds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from edge_agent.demo import plant


async def collect(work: Path, secs: float, seed: int) -> None:
    """Run the simulated plant without faults and the agent on the demo config for ``secs``
    (into ``work/data``; each run appends to the same raw dataset)."""
    async with plant.simulated_plant(work / f"labels-{seed}", seed) as (cast, mill, broker, _sensors):
        text = plant.plant_config(work, cast.port, mill.endpoint, broker.port)
        await plant._run_agent(text, work / "plant.yaml", secs, "learning", show=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge_agent.demo.pretrain", description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=float, default=180.0, help="normal operation to collect per start (wall time)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9], help="one plant start per seed")
    ap.add_argument("--out", default=str(plant.BUNDLED_MODELS))
    ap.add_argument("--validation-fraction", type=float, default=0.3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("asyncua", "amqtt", "pymodbus", "transitions", "hardware"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="axedge-pretrain-") as tmp:
        work = Path(tmp)
        t0 = time.time_ns()
        for seed in args.seeds:
            print(f"collecting {args.secs:.0f} s of normal operation (seed {seed})", flush=True)
            asyncio.run(collect(work, args.secs, seed))
        staged = work / "models"
        procs = plant._train(work / "data", staged, t0, validation_fraction=args.validation_fraction)
        for p in procs:
            meta_path = staged / p["id"] / "model.json"
            meta = json.loads(meta_path.read_text())
            dest = out / p["id"]
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(staged / p["id"], dest)
            print(f"  {p['id']}: {meta['kind']} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
