"""OPC UA benchmark: the agent's subscription path vs a bare asyncua subscription client.

One simulated machine tool process serves ``--nodes`` Double variables that all change
``--rate-hz`` times per second. In the same run, each client runs in its own process against that
server (alternating, ``--rounds`` times each) and reports notifications received per CPU-second
of its own process (``time.process_time``), measured after a warm-up:

* ``bare``: asyncua ``Client.create_subscription`` with a ``datachange_notification`` handler
  that only counts (the library's documented way to subscribe);
* ``agent``: the ``opcua_subscription`` connector (batched decoding into numpy chunks) feeding a
  real ``BoundedChannel`` drained by a consumer task, as in the agent.

Then the polling connector reads all nodes back to back: values/s.

    .venv/bin/python bench/opcua.py [--nodes 1000] [--rate-hz 20] [--secs 8] [--rounds 2]

Target (issue 4): agent / bare >= 0.8. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NS_SIM = "urn:axedge:sim:machine-tool"
PUBLISH_MS, SAMPLE_MS, QUEUE = 100.0, 25.0, 10


def node_ids(n: int) -> list[str]:
    return [f"nsu={NS_SIM};s=Bulk.Node{k}" for k in range(n)]


async def run_bare(endpoint: str, n: int, warmup: float, secs: float) -> dict:
    from asyncua import Client

    count = 0

    class Handler:
        def datachange_notification(self, node, val, data):
            nonlocal count
            count += 1

    async with Client(endpoint, timeout=30, watchdog_intervall=30) as client:  # same keep-alive as the agent run
        ns = await client.get_namespace_index(NS_SIM)
        nodes = [client.get_node(f"ns={ns};s=Bulk.Node{k}") for k in range(n)]
        sub = await client.create_subscription(PUBLISH_MS, Handler())
        await sub.subscribe_data_change(nodes, sampling_interval=SAMPLE_MS, queuesize=QUEUE)
        await asyncio.sleep(warmup)
        c0, t0, w0 = count, time.process_time(), time.monotonic()
        await asyncio.sleep(secs)
        c1, t1, w1 = count, time.process_time(), time.monotonic()
    return {"notifications": c1 - c0, "cpu_secs": t1 - t0, "wall_secs": w1 - w0}


async def run_agent(endpoint: str, n: int, warmup: float, secs: float) -> dict:
    from connectors.base import ConnectorContext
    from connectors.opcua.config import OpcUaSubscriptionConfig
    from connectors.opcua.connector import build_subscription
    from edge_agent.core.channel import BoundedChannel, ChannelClosed
    from edge_agent.signals import SignalCatalog

    ch = BoundedChannel(1024, 1_000_000)
    ctx = ConnectorContext("bench", SignalCatalog(), ch.send)
    cfg = OpcUaSubscriptionConfig(
        id="bench", type="opcua_subscription", asset="bench/opcua", endpoint=endpoint,
        nodes=[{"name": f"n{k}", "node_id": nid} for k, nid in enumerate(node_ids(n))],
        publishing_interval_ms=PUBLISH_MS, sampling_interval_ms=SAMPLE_MS, queue_size=QUEUE, request_timeout_secs=30,
    )
    [unit] = build_subscription(cfg, ctx)
    rows = 0

    async def consume():
        nonlocal rows
        try:
            while True:
                c = await ch.recv()
                rows += len(c)
        except ChannelClosed:
            pass

    await unit.connect()
    tasks = [asyncio.create_task(unit.run()), asyncio.create_task(consume())]
    await asyncio.sleep(warmup)
    c0, t0, w0 = rows, time.process_time(), time.monotonic()
    await asyncio.sleep(secs)
    c1, t1, w1 = rows, time.process_time(), time.monotonic()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await unit.aclose()
    return {"notifications": c1 - c0, "cpu_secs": t1 - t0, "wall_secs": w1 - w0}


async def run_poll(endpoint: str, n: int, secs: float) -> dict:
    from connectors.base import ConnectorContext
    from connectors.opcua.config import OpcUaPollingConfig
    from connectors.opcua.connector import build_polling
    from edge_agent.core.channel import BoundedChannel
    from edge_agent.signals import SignalCatalog

    ch = BoundedChannel(1_000_000, 100_000_000)
    ctx = ConnectorContext("bench", SignalCatalog(), ch.send)
    cfg = OpcUaPollingConfig(
        id="bench", type="opcua_polling", asset="bench/opcua", endpoint=endpoint, request_timeout_secs=30,
        nodes=[{"name": f"n{k}", "node_id": nid} for k, nid in enumerate(node_ids(n))],
    )
    [unit] = build_polling(cfg, ctx)
    await unit.connect()
    await unit.poll()
    polls, t0, w0 = 0, time.process_time(), time.monotonic()
    while time.monotonic() - w0 < secs:
        await unit.poll()
        polls += 1
        while ch.recv_nowait() is not None:
            pass
    t1, w1 = time.process_time(), time.monotonic()
    await unit.aclose()
    return {"values": polls * n, "polls": polls, "cpu_secs": t1 - t0, "wall_secs": w1 - w0,
            "max_nodes_per_read": unit.max_nodes_per_read}


def client_main(args) -> int:
    logging.basicConfig(level=logging.ERROR)
    if args.client == "bare":
        res = asyncio.run(run_bare(args.endpoint, args.nodes, args.warmup, args.secs))
    elif args.client == "agent":
        res = asyncio.run(run_agent(args.endpoint, args.nodes, args.warmup, args.secs))
    else:
        res = asyncio.run(run_poll(args.endpoint, args.nodes, args.secs))
    print(json.dumps(res))
    return 0


def _client(kind: str, endpoint: str, args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--client", kind, "--endpoint", endpoint, "--nodes", str(args.nodes),
         "--secs", str(args.secs), "--warmup", str(args.warmup)],
        capture_output=True, text=True, cwd=ROOT,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} client failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--rate-hz", type=float, default=20.0, help="updates per second of every node")
    p.add_argument("--secs", type=float, default=8.0, help="measurement window per client run")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--client", choices=("bare", "agent", "poll"), help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        return client_main(args)

    from hardware.machine_tool import MachineToolProcess

    sim = MachineToolProcess("--bulk-nodes", str(args.nodes), "--bulk-hz", str(args.rate_hz), "--update-hz", "1")
    sim.start(timeout=300)
    try:
        runs: dict[str, list[dict]] = {"bare": [], "agent": []}
        for _ in range(args.rounds):
            for kind in ("bare", "agent"):
                runs[kind].append(_client(kind, sim.endpoint, args))
        poll = _client("poll", sim.endpoint, args)
    finally:
        sim.stop()

    def rate(rs):  # pooled over the rounds: total notifications / total client CPU seconds
        cpu = sum(r["cpu_secs"] for r in rs)
        return sum(r["notifications"] for r in rs) / cpu if cpu > 0 else 0.0

    bare, agent = rate(runs["bare"]), rate(runs["agent"])
    print(json.dumps({
        "benchmark": "opcua",
        "nodes": args.nodes,
        "offered_notifications_per_sec": args.nodes * args.rate_hz,
        "bare_asyncua_notifications_per_cpu_sec": round(bare),
        "agent_notifications_per_cpu_sec": round(agent),
        "ratio_agent_to_bare": round(agent / bare, 3) if bare else None,
        "delivered_notifications_per_sec": {k: round(sum(r["notifications"] for r in rs) / sum(r["wall_secs"] for r in rs))
                                            for k, rs in runs.items()},
        "target_ratio": 0.8,
        "bare_runs": runs["bare"],
        "agent_runs": runs["agent"],
        "polling_values_per_sec": round(poll["values"] / poll["wall_secs"]),
        "polling_values_per_cpu_sec": round(poll["values"] / poll["cpu_secs"]),
        "polling": poll,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
