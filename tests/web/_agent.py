"""A real agent (synthetic connectors -> durable buffer -> Parquet) with its HTTP server on a free
loopback port, for the status page tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from pathlib import Path

from edge_agent.config import load_config_text
from edge_agent.runtime.agent import Agent

CFG = """\
agent:
  id: gw-web
  data_dir: {root}/data
  state_dir: {root}/state
  http: {{listen_host: "{host}", listen_port: 0}}
core:
  batch: {{max_rows: 5000, max_age_secs: 0.2}}
sinks:
  - id: raw
    type: parquet
    max_file_age_secs: 0.5
connectors:
  - id: casting
    type: synthetic
    asset: plant1/casting/line1/pourer
    rate_hz: 20
    signals:
      - {{name: shot_counter, unit: "1", waveform: counter}}
      - {{name: melt_temperature, unit: Cel, waveform: sine, amplitude: 5, offset: 1420, period_secs: 20}}
  - id: machining
    type: synthetic
    asset: plant1/machining/cell1/mill1
    rate_hz: 10
    signals:
      - {{name: spindle_load, unit: "%", waveform: square, amplitude: 10, offset: 40, period_secs: 4}}
"""


@contextlib.asynccontextmanager
async def running_agent(root: Path, host: str = "127.0.0.1", config_text: str | None = None):
    agent = Agent(load_config_text(config_text or CFG.format(root=root, host=host)))
    task = asyncio.create_task(agent.run())
    started = asyncio.create_task(agent.started.wait())
    await asyncio.wait({task, started}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()  # raises the startup error
    try:
        yield agent
    finally:
        agent.request_stop()
        await task


async def wait_rows(agent: Agent, rows: int, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    t_end = loop.time() + timeout
    while agent.metrics.total_committed() < rows:
        assert loop.time() < t_end, f"only {agent.metrics.total_committed()} rows committed"
        await asyncio.sleep(0.05)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(_get, url, headers)


async def get_json(url: str, headers: dict[str, str] | None = None):
    code, _, body = await get(url, headers)
    assert code == 200, (code, body[:200])
    return json.loads(body)
