"""MQTT throughput: messages per CPU-second of the receiving process, agent vs bare paho.

One private Mosquitto, one publisher, two receivers of the *same* QoS 1 stream in the same run:

* ``bare``: a paho subscriber that only counts messages (auto acks);
* ``agent``: the axedge agent (MQTT connector -> core -> SQLite buffer -> committed raw Parquet),
  acking each message only after it is durable.

Each receiver is its own process; its CPU time (user + system, all threads) is measured from
just before the publisher starts until it has received (bare) or committed to Parquet (agent)
every message. A second phase sends Sparkplug B NDATA (``--metrics`` metrics per message) to the
agent and reports Sparkplug metrics per CPU-second; a third pushes synthetic rows through the
uplink sink (UNS JSON, QoS 1, acknowledged) and reports rows per CPU-second. Prints JSON.

    .venv/bin/python bench/mqtt.py [--messages 100000] [--sparkplug-messages 5000] [--metrics 50]

Target (issue 5): agent / bare >= 0.6 messages per CPU-second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AGENT_CFG = """\
agent:
  id: bench
  data_dir: {root}/data
  state_dir: {root}/state
  log_level: warning
  http: {{enabled: false}}
core:
  batch: {{max_rows: 50000, max_age_secs: 0.25}}
buffer: {{kind: sqlite, fsync: normal, max_bytes: 2GiB}}
sinks:
  - {{id: raw, type: parquet, max_file_age_secs: 2}}
connectors:
  - id: mq
    type: mqtt
    asset: bench
    broker: {{host: 127.0.0.1, port: {port}, client_id: bench-agent, session: clean}}
    subscriptions:
      - {{topic: "bench/{{asset}}/{{signal}}", qos: 1}}
      - {{topic: "spBv1.0/{{group}}/#", format: sparkplug_b, qos: 1}}
"""


UPLINK_CFG = """\
agent:
  id: bench
  data_dir: {root}/data
  state_dir: {root}/state
  log_level: warning
  http: {{enabled: false}}
core:
  batch: {{max_rows: 20000, max_age_secs: 0.25}}
buffer: {{kind: sqlite, fsync: normal, max_bytes: 2GiB}}
sinks:
  - id: uplink
    type: mqtt_uplink
    broker: {{host: 127.0.0.1, port: {port}, client_id: bench-uplink, session: clean}}
    uns: {{topic: "up/{{asset}}/{{signal}}"}}
connectors:
  - id: syn
    type: synthetic
    asset: bench/line1
    max_speed: true
    max_rows: {rows}
    bulk: {{count: 100, assets: 10}}
"""


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _wait_go() -> tuple[float, float]:
    print("READY", flush=True)
    sys.stdin.readline()  # GO
    return cpu(), time.monotonic()


def role_bare(port: int, n: int) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    done = threading.Event()
    count = 0

    def on_message(c, u, m) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare")
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe("bench/+/+", qos=1)
    c.loop_start()
    time.sleep(0.5)
    c0, t0 = _wait_go()
    done.wait()
    c1, t1 = cpu(), time.monotonic()
    c.loop_stop()
    print(json.dumps({"received": count, "cpu_secs": c1 - c0, "wall_secs": t1 - t0}), flush=True)


def role_agent(port: int, n_rows: int, workdir: Path, uplink: bool = False) -> None:
    import yaml  # noqa: F401 - config loader dependency, imported before measuring

    from edge_agent.config import load_config_text
    from edge_agent.runtime.agent import Agent

    async def main() -> None:
        if uplink:  # the synthetic rows flow from the start: measure the whole run, startup included
            c0, t0 = await asyncio.to_thread(_wait_go)
            agent = Agent(load_config_text(UPLINK_CFG.format(root=workdir, port=port, rows=n_rows)))
            task = asyncio.create_task(agent.run())
        else:
            agent = Agent(load_config_text(AGENT_CFG.format(root=workdir, port=port)))
            task = asyncio.create_task(agent.run())
            await agent.started.wait()
            await asyncio.sleep(1.0)
            c0, t0 = await asyncio.to_thread(_wait_go)
        while agent.metrics.total_committed() < n_rows:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        c1, t1 = cpu(), time.monotonic()
        agent.request_stop()
        await task
        q = agent.metrics.connectors["mq"].quarantined if "mq" in agent.metrics.connectors else {}
        print(json.dumps({"committed_rows": agent.metrics.total_committed(), "cpu_secs": c1 - c0, "wall_secs": t1 - t0,
                          "quarantined": sum(q.values())}), flush=True)

    asyncio.run(main())


def _spawn(*args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = p.stdout.readline()
    if line.strip() != "READY":
        raise SystemExit(f"receiver {args[:2]} failed to start: {line}")
    return p


def _publisher(port: int):
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.max_inflight_messages_set(0)  # no paho window (it rescans its queue per PUBACK); outstanding bounded below
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def run(args: argparse.Namespace) -> dict:
    from tests._mosquitto import Mosquitto, find_mosquitto

    from connectors.mqtt.sparkplug_codec import Metric, SpDataType, encode_payload

    out: dict = {"messages": args.messages}
    with tempfile.TemporaryDirectory(prefix="axedge-bench-mqtt-") as tmp:
        broker = Mosquitto(Path(tmp) / "broker", find_mosquitto())
        (Path(tmp) / "broker").mkdir()
        broker.start()
        try:
            # ---- phase 1: JSON, agent and bare paho on the same stream
            n = args.messages
            signals = 100
            bare = _spawn("--role", "bare", "--port", str(broker.plain_port), "--n", str(n))
            agent = _spawn("--role", "agent", "--port", str(broker.plain_port), "--n", str(n), "--dir", str(Path(tmp) / "a1"))
            pub = _publisher(broker.plain_port)
            for p in (bare, agent):
                p.stdin.write("GO\n")
                p.stdin.flush()
            ts0 = int(time.time() * 1000)
            outstanding: deque = deque()
            for i in range(n):
                outstanding.append(pub.publish(f"bench/m{i % 10}/s{i % signals}", json.dumps({"value": i * 0.5, "timestamp": ts0 + i}), qos=1))
                if len(outstanding) > 20_000:  # paho's packet ids are 16-bit: never queue 65,536 at once
                    outstanding.popleft().wait_for_publish(60)
            b = json.loads(bare.stdout.readline())
            a = json.loads(agent.stdout.readline())
            bare.wait(30)
            agent.wait(60)
            out["bare_paho"] = {**b, "msgs_per_cpu_sec": round(n / b["cpu_secs"])}
            out["agent_json"] = {**a, "msgs_per_cpu_sec": round(n / a["cpu_secs"])}
            out["ratio"] = round(out["agent_json"]["msgs_per_cpu_sec"] / out["bare_paho"]["msgs_per_cpu_sec"], 3)
            # ---- phase 2: Sparkplug B NDATA with aliases into the agent
            m, k = args.sparkplug_messages, args.metrics
            agent = _spawn("--role", "agent", "--port", str(broker.plain_port), "--n", str(m * k + k), "--dir", str(Path(tmp) / "a2"))
            agent.stdin.write("GO\n")
            agent.stdin.flush()
            now = int(time.time() * 1000)
            birth = [Metric(name="bdSeq", datatype=SpDataType.Int64, value=0)]
            birth += [Metric(name=f"m{j}", alias=j, datatype=SpDataType.Double, value=0.0) for j in range(k)]
            pub.publish("spBv1.0/bench/NBIRTH/node1", encode_payload(now, 0, birth), qos=1)
            for i in range(m):
                ms = [Metric(alias=j, timestamp=now + i, datatype=SpDataType.Double, value=i + j * 0.1) for j in range(k)]
                outstanding.append(pub.publish("spBv1.0/bench/NDATA/node1", encode_payload(now + i, (i + 1) % 256, ms), qos=1))
                if len(outstanding) > 20_000:
                    outstanding.popleft().wait_for_publish(60)
            a2 = json.loads(agent.stdout.readline())
            agent.wait(60)
            out["agent_sparkplug"] = {**a2, "messages": m, "metrics_per_message": k,
                                      "metrics_per_cpu_sec": round((m * k + k) / a2["cpu_secs"]),
                                      "msgs_per_cpu_sec": round(m / a2["cpu_secs"])}
            pub.loop_stop()
            # ---- phase 3: uplink, synthetic rows -> buffer -> UNS JSON publishes acknowledged by the broker
            if args.uplink_rows:
                u = args.uplink_rows
                agent = _spawn("--role", "uplink", "--port", str(broker.plain_port), "--n", str(u), "--dir", str(Path(tmp) / "a3"))
                agent.stdin.write("GO\n")
                agent.stdin.flush()
                a3 = json.loads(agent.stdout.readline())
                agent.wait(60)
                out["agent_uplink_uns"] = {**a3, "rows_per_cpu_sec": round(u / a3["cpu_secs"])}
        finally:
            broker.stop()
    out["target_ratio"] = 0.6
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--sparkplug-messages", type=int, default=5_000)
    p.add_argument("--metrics", type=int, default=50, help="metrics per Sparkplug NDATA")
    p.add_argument("--uplink-rows", type=int, default=20_000, help="rows through the uplink sink (0: skip)")
    p.add_argument("--role", choices=("bare", "agent", "uplink"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "bare":
        role_bare(args.port, args.n)
    elif args.role in ("agent", "uplink"):
        role_agent(args.port, args.n, args.dir, uplink=args.role == "uplink")
    else:
        print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
