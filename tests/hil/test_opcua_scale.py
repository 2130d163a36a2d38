"""5,000 monitored items with security on: created in chunks, every item delivers its value."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from connectors.base import ConnectorContext
from connectors.opcua.config import OpcUaSubscriptionConfig
from connectors.opcua.connector import build_subscription
from edge_agent.core.channel import BoundedChannel
from edge_agent.signals import SignalCatalog
from hardware.machine_tool import NS_SIM, MachineToolProcess

N = 5000


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_5000_monitored_items_with_sign_and_encrypt(tmp_path):
    proc = MachineToolProcess("--security", "encrypt", "--cert-dir", str(tmp_path / "pki"), "--bulk-nodes", str(N),
                              "--bulk-hz", "0.5", "--update-hz", "1", log_path=tmp_path / "sim.log")
    info = await asyncio.to_thread(proc.start, timeout=240)
    try:
        ch = BoundedChannel(100_000, 10_000_000)
        ctx = ConnectorContext("bulk", SignalCatalog(), ch.send, state_dir=tmp_path / "state")
        cfg = OpcUaSubscriptionConfig(
            id="bulk", type="opcua_subscription", asset="plant1/test/bulk", endpoint=proc.endpoint,
            nodes=[{"name": f"n{k}", "node_id": f"nsu={NS_SIM};s=Bulk.Node{k}"} for k in range(N)],
            security={"mode": "SignAndEncrypt", "policy": "Aes256_Sha256_RsaPss",
                      "server_fingerprint_sha256": info["server_fingerprint_sha256"]},
            publishing_interval_ms=200, sampling_interval_ms=200, max_items_per_request=500, request_timeout_secs=60,
        )
        [unit] = build_subscription(cfg, ctx)
        await unit.connect()
        task = asyncio.create_task(unit.run())
        seen = np.zeros(N, dtype=bool)
        chunks = 0
        t0 = time.monotonic()
        try:
            while not seen.all() and time.monotonic() - t0 < 90:
                c = await ch.recv(timeout=1.0)
                if c is not None:
                    chunks += 1
                    assert (c.quality == 0).all()
                    seen[c.signal_id] = True
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await unit.aclose()
        assert seen.all(), f"{int((~seen).sum())} of {N} items delivered nothing"
        assert chunks < N / 10  # batched: many values per chunk, not one chunk per value
        assert len(ctx.catalog) == N and ctx.metrics.gaps == 0
    finally:
        proc.stop()
