"""The agent end to end on real files: synthetic connector -> core -> durable buffer -> Parquet."""

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from edge_agent.config import load_config_text
from edge_agent.runtime.agent import Agent

CFG = """\
agent:
  id: gw-test
  data_dir: {root}/data
  state_dir: {root}/state
  http: {{listen_port: 0}}
core:
  batch: {{max_rows: 5000, max_age_secs: 0.2}}
buffer:
  kind: {kind}
sinks:
  - id: raw
    type: parquet
    max_file_age_secs: 0.5
connectors:
  - id: synth
    type: synthetic
    asset: plant1/casting/line1/pourer
    rate_hz: 100
    chunk_secs: 0.05
    max_speed: true
    max_rows: {rows}
    signals:
      - {{name: counter_a, unit: "1", waveform: counter}}
      - {{name: temp, unit: Cel, waveform: sine, amplitude: 5, offset: 60}}
  - id: synth2
    type: synthetic
    asset: plant1/machining/cell1/mill1
    rate_hz: 100
    max_speed: true
    max_rows: 600
    signals:
      - {{name: spindle_load, unit: "%", waveform: counter}}
"""


def cfg_text(root: Path, kind="sqlite", rows=3000) -> str:
    return CFG.format(root=root, kind=kind, rows=rows)


async def run_until_committed(agent: Agent, rows: int, timeout=30.0):
    task = asyncio.create_task(agent.run())
    await agent.started.wait()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while agent.metrics.total_received() < rows and loop.time() - t0 < timeout:
        await asyncio.sleep(0.05)
    agent.request_stop()
    return await task


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_every_emitted_sample_is_committed_exactly_once(tmp_path, kind):
    cfg = load_config_text(cfg_text(tmp_path, kind))
    agent = Agent(cfg)
    res = await run_until_committed(agent, 3600)
    assert res.received == 3600 and res.committed == 3600 and res.dropped == 0
    t = ds.dataset(tmp_path / "data" / "raw", partitioning="hive").to_table()
    assert t.num_rows == 3600
    df = t.to_pandas()
    assert sorted(df["asset"].unique()) == ["plant1.casting.line1.pourer", "plant1.machining.cell1.mill1"]
    a = df[df["signal"] == "plant1/casting/line1/pourer/counter_a"].sort_values("time")
    assert a["value"].tolist() == list(np.arange(1, 1501, dtype=float))  # counter 1..1500, none lost or doubled
    assert a["time"].is_monotonic_increasing and a["time"].dt.tz is not None
    assert (df["quality"] == 0).all()
    assert not df.duplicated(["signal", "time"]).any()


async def test_metrics_and_healthz_served_on_loopback(tmp_path):
    cfg = load_config_text(cfg_text(tmp_path, "memory", rows=200))
    agent = Agent(cfg)
    task = asyncio.create_task(agent.run())
    await agent.started.wait()
    while agent.metrics.total_committed() < 200:
        await asyncio.sleep(0.05)
    port = agent.http_port

    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()

    status, body = await asyncio.to_thread(get, "/metrics")
    assert status == 200
    assert 'axedge_samples_received_total{connector="synth"}' in body
    assert 'axedge_connector_state{connector="synth",state="connected"} 1.0' in body
    assert "axedge_batch_flushes_total" in body and "axedge_buffer_rows" in body
    assert "axedge_buffer_read_backs_total{sink=\"raw\"}" in body
    assert 'axedge_sink_events_total{event="skipped_rows",sink="raw"}' in body
    status, body = await asyncio.to_thread(get, "/healthz")
    h = json.loads(body)
    assert h["connectors"]["synth"] == "connected" and h["committed"] >= 200
    agent.request_stop()
    await task


async def test_restart_appends_without_duplicates(tmp_path):
    for _ in range(2):
        agent = Agent(load_config_text(cfg_text(tmp_path, "sqlite", rows=1000)))
        await run_until_committed(agent, 1600)
    t = ds.dataset(tmp_path / "data" / "raw", partitioning="hive").to_table().to_pandas()
    assert len(t) == 3200
    assert not t.duplicated(["signal", "time"]).any()


def _axedge(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_validate_bad_config_exit_2_with_file_line(tmp_path):
    p = tmp_path / "plant.yaml"
    p.write_text(cfg_text(tmp_path).replace("rate_hz: 100\n    chunk", "rate_hz: 0\n    chunk"))
    r = _axedge("validate", str(p))
    assert r.returncode == 2
    assert f"{p}:18 connectors[0].rate_hz: Input should be greater than 0" in r.stderr


def test_cli_run_then_describe(tmp_path):
    p = tmp_path / "plant.yaml"
    p.write_text(cfg_text(tmp_path, rows=500))
    assert _axedge("validate", str(p)).returncode == 0
    r = _axedge("run", str(p), "--duration-secs", "3")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["committed"] == 1100
    # libarrow's own pool (the Parquet encoder's) is glibc's, chosen before pyarrow loaded
    assert 'arrow_pool="system"' in r.stderr
    r = _axedge("dataset", "describe", str(tmp_path / "data"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["rows"] == 1100


def test_cli_version_and_schema():
    r = _axedge("--version")
    assert r.returncode == 0 and r.stdout.startswith("axedge ")
    r = _axedge("config", "schema")
    schema = json.loads(r.stdout)
    assert "connectors" in schema["properties"]


def test_unwritable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = tmp_path / "plant.yaml"
    p.write_text(cfg_text(tmp_path).replace(f"data_dir: {tmp_path}/data", f"data_dir: {blocker}/data"))
    r = _axedge("run", str(p), "--duration-secs", "1")
    assert r.returncode == 1
    assert str(blocker) in r.stderr


def test_sighup_reload_valid_then_invalid_config(tmp_path):
    import os
    import signal
    import time

    p = tmp_path / "plant.yaml"
    text = cfg_text(tmp_path, rows=100000).replace("max_speed: true\n    max_rows: 100000", "max_rows: 100000")
    p.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run", str(p), "--no-status"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not list((tmp_path / "data" / "raw").rglob("*.parquet")) and time.monotonic() - t0 < 60:
            time.sleep(0.2)  # running and committing
        p.write_text(text.replace("rate_hz: 100\n    chunk", "rate_hz: 50\n    chunk"))  # valid change
        os.kill(proc.pid, signal.SIGHUP)
        time.sleep(3)
        p.write_text(text.replace("rate_hz: 100\n    chunk", "rate_hz: -5\n    chunk"))  # invalid: refused
        os.kill(proc.pid, signal.SIGHUP)
        time.sleep(2)
        assert proc.poll() is None, "an invalid config on SIGHUP must not stop the agent"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reloads"] == 1
    assert "config reload refused" in err and "rate_hz" in err
    t = ds.dataset(tmp_path / "data" / "raw", partitioning="hive").to_table().to_pandas()
    assert len(t) == summary["committed"] > 0
    assert not t.duplicated(["signal", "time"]).any()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def test_startup_error_policy_error_stops_in_order_and_ignore_keeps_running(tmp_path):
    port = _closed_port()
    dead = f"""\
  - id: dead-plc
    type: modbus
    asset: plant1/casting/line2
    on_startup_error: {{policy}}
    devices:
      - name: plc2
        host: 127.0.0.1
        port: {port}
        request_timeout_secs: 0.5
        units:
          - unit_id: 1
            signals:
              - {{{{name: temp, table: holding, address: 0, type: int16}}}}
"""
    base = cfg_text(tmp_path, rows=500)
    p = tmp_path / "plant.yaml"
    p.write_text(base + dead.format(policy="error"))
    r = _axedge("run", str(p), "--duration-secs", "20")
    assert r.returncode == 1
    assert "dead-plc" in r.stderr and "could not start" in r.stderr
    p.write_text(base + dead.format(policy="ignore"))
    r = _axedge("run", str(p), "--duration-secs", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["committed"] >= 1100  # the healthy connectors delivered everything
