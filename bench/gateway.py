"""Gateway budget benchmark: the demo plant with the agent pinned to one core.

Starts the simulated plant as separate processes on the other cores (casting line over Modbus TCP,
machine tool over OPC UA, MQTT sensor nodes with their embedded broker), runs ``axedge run`` on the
demo plant's config (``edge_agent.demo.plant``, what ``axedge demo`` collects, without the anomaly
models) with the agent pinned to ONE core (``os.sched_setaffinity``, like ``taskset -c``), and
after a warm-up measures over the steady window:

- CPU % of that one core (user + system time of the agent process / wall time)
- RSS (mean and peak, sampled every second)
- disk growth per day: bytes per committed row of the raw dataset (measured on disk after the
  orderly stop, every row committed) x rows per second of the window; plus the durable buffer's
  size (state_dir), which is bounded and drained, not growth

and compares them with each profile in ``hardware/gateway_profiles.yaml`` (CPU scaled by the
profile's ``cpu_speed_factor``: an estimate; run this script on the device for the real figure).
Prints one JSON document.

    .venv/bin/python bench/gateway.py --duration-secs 120
    .venv/bin/python bench/gateway.py --config my-plant.yaml --no-sims   # your own plant
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
AXEDGE = [sys.executable, "-m", "edge_agent.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cores: set[int]):
    return lambda: os.sched_setaffinity(0, cores)


def start_sim(args: list[str], cores: set[int]) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([*AXEDGE, "sim", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=pinned(cores))
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"simulator {args[0]} did not start")
    return proc, json.loads(line)


def plant_config(out: Path, modbus_port: int, opcua_endpoint: str, broker: str, http_port: int,
                 file_age_secs: float) -> Path:
    """The demo plant's config (``edge_agent.demo.plant``), pointed at the running simulators, with
    a known HTTP port and gateway-like file rotation."""
    from edge_agent.demo.plant import plant_config as demo_plant_config

    mqtt_port = int(broker.rpartition(":")[2])
    cfg = yaml.safe_load(demo_plant_config(out, modbus_port, opcua_endpoint, mqtt_port))
    cfg["agent"]["id"] = "bench-gateway"
    cfg["agent"]["http"] = {"listen_port": http_port}
    for sink in cfg["sinks"]:
        if sink["type"] == "parquet":
            sink["max_file_age_secs"] = file_age_secs
    path = out / "plant.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def disk_bytes(path: Path) -> int:
    """Allocated bytes under ``path`` (st_blocks, what the disk really loses)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                pass  # rotated away between listing and stat
    return total


def healthz(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # 503 while degraded still carries the counters
        return json.loads(e.read())


def compare(measured: dict, profiles: dict) -> dict:
    out = {}
    for name, p in profiles.items():
        b = p["budget"]
        est_cpu = measured["cpu_pct_of_one_core"] / p["cpu_speed_factor"]
        disk_day = measured["disk_gib_per_day"]
        checks = {
            "cpu_pct_of_one_core_estimated": {"value": round(est_cpu, 1), "budget": b["cpu_pct_of_one_core"],
                                              "ok": est_cpu <= b["cpu_pct_of_one_core"]},
            "rss_mib_peak": {"value": measured["rss_mib_peak"], "budget": b["rss_mib"],
                             "ok": measured["rss_mib_peak"] <= b["rss_mib"]},
            "disk_gib_per_day": {"value": disk_day, "budget": b["disk_gib_per_day"], "ok": disk_day <= b["disk_gib_per_day"]},
        }
        out[name] = {
            "arch": p["arch"],
            "ok": all(c["ok"] for c in checks.values()),
            "checks": checks,
            "days_until_disk_80pct": round(0.8 * p["disk_gib"] / disk_day, 1) if disk_day > 0 else None,
            "retention_days_wanted": b["retention_days"],
            "rss_pct_of_ram": round(100 * measured["rss_mib_peak"] / p["ram_mib"], 1),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration-secs", type=float, default=60.0, help="measured window (default 60)")
    ap.add_argument("--warmup-secs", type=float, default=10.0, help="ignored start-up time (default 10)")
    ap.add_argument("--core", type=int, default=None, help="core for the agent (default: the last one)")
    ap.add_argument("--config", type=Path, help="bench this config instead of the demo plant (its http port must be set)")
    ap.add_argument("--no-sims", action="store_true", help="do not start the simulators (with --config)")
    ap.add_argument("--sensor-nodes", type=int, default=4)
    ap.add_argument("--sensor-rate-hz", type=float, default=10.0)
    ap.add_argument("--file-age-secs", type=float, default=300.0, help="Parquet rotation of the demo plant (default 300, as on a gateway)")
    ap.add_argument("--profiles", type=Path, default=ROOT / "hardware" / "gateway_profiles.yaml")
    ap.add_argument("--keep", action="store_true", help="keep the output directory")
    args = ap.parse_args(argv)

    cores = sorted(os.sched_getaffinity(0))
    agent_core = args.core if args.core is not None else cores[-1]
    others = set(cores) - {agent_core} or {agent_core}
    out = Path(tempfile.mkdtemp(prefix="axedge-bench-gateway-"))
    sims: list[subprocess.Popen] = []
    agent = None
    try:
        if args.config:
            cfg_path = args.config
            cfg = yaml.safe_load(cfg_path.read_text())
            http_port = cfg["agent"]["http"]["listen_port"]
            data_dir, state_dir = Path(cfg["agent"]["data_dir"]), Path(cfg["agent"]["state_dir"])
        else:
            p, cl = start_sim(["casting-line", "--port", "0", "--seed", "1"], others)
            sims.append(p)
            p, mt = start_sim(["machine-tool", "--port", "0", "--seed", "1"], others)
            sims.append(p)
            p, se = start_sim(["sensors", "--port", "0", "--nodes", str(args.sensor_nodes),
                               "--rate-hz", str(args.sensor_rate_hz), "--faults", "none"], others)
            sims.append(p)
            http_port = free_port()
            cfg_path = plant_config(out, cl["port"], mt["endpoint"], se["broker"], http_port, args.file_age_secs)
            data_dir, state_dir = out / "data", out / "state"
        if args.no_sims and not args.config:
            ap.error("--no-sims needs --config")

        agent = subprocess.Popen([*AXEDGE, "run", str(cfg_path), "--no-status"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, preexec_fn=pinned({agent_core}), cwd=out)
        proc = psutil.Process(agent.pid)
        time.sleep(args.warmup_secs)
        if agent.poll() is not None:
            raise SystemExit(f"agent exited during warm-up: {agent.stderr.read()[-2000:]}")
        h0, t0 = healthz(http_port), time.monotonic()
        c0 = proc.cpu_times()
        rss, state_peak = [], 0
        while time.monotonic() - t0 < args.duration_secs:
            rss.append(proc.memory_info().rss)
            state_peak = max(state_peak, disk_bytes(state_dir))
            time.sleep(1.0)
        wall = time.monotonic() - t0
        c1 = proc.cpu_times()
        h1 = healthz(http_port)
        agent.send_signal(signal.SIGTERM)  # orderly stop: every buffered row committed
        stdout, stderr = agent.communicate(timeout=120)
        if agent.returncode != 0:
            raise SystemExit(f"agent failed ({agent.returncode}): {stderr[-2000:]}")
        totals = json.loads(stdout.strip().splitlines()[-1])
        committed_rows = totals["committed"]
        data_total = disk_bytes(data_dir)
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        for p in sims:
            p.terminate()
        for p in sims:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    rows_per_sec = (h1["received"] - h0["received"]) / wall
    cpu = (c1.user - c0.user + c1.system - c0.system) / wall * 100
    bytes_per_row = data_total / committed_rows if committed_rows else 0.0
    per_day = bytes_per_row * rows_per_sec * 86400 / 1024**3
    measured = {
        "cpu_pct_of_one_core": round(cpu, 1),
        "rss_mib_mean": round(sum(rss) / len(rss) / 2**20, 1),
        "rss_mib_peak": round(max(rss) / 2**20, 1),
        "samples_per_sec": round(rows_per_sec, 1),
        "signals": None,
        "rows_committed": committed_rows,
        "bytes_per_row_on_disk": round(bytes_per_row, 2),
        "disk_gib_per_day": round(per_day, 3),
        "state_dir_mib_peak": round(state_peak / 2**20, 1),
        "dropped": totals["dropped"], "errors": totals["errors"],
        "connectors": h1["connectors"],
    }
    try:
        cat = json.loads((data_dir / "_axedge" / "signals.json").read_text())
        measured["signals"] = len(cat if isinstance(cat, list) else cat.get("signals", []))
    except (OSError, ValueError):
        measured.pop("signals")
    profiles = yaml.safe_load(args.profiles.read_text())["profiles"]
    report = {
        "bench": "gateway",
        "host": {"machine": platform.machine(), "cpu": platform.processor() or platform.machine(),
                 "cores": os.cpu_count(), "python": platform.python_version()},
        "agent_core": agent_core,
        "window_secs": round(wall, 1),
        "warmup_secs": args.warmup_secs,
        "config": str(cfg_path) if args.config else f"demo plant (edge_agent.demo.plant), files rotated every {args.file_age_secs:g} s",
        "sensor_nodes": None if args.config else args.sensor_nodes,
        "measured": measured,
        "profiles": compare(measured, profiles),
    }
    print(json.dumps(report, indent=2))
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
