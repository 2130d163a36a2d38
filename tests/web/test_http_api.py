"""The status page's HTTP routes against a real agent over a real socket."""

import asyncio
import re

import pandas as pd
import pyarrow.dataset as ds
import pytest

from edge_agent.errors import ConfigError
from edge_agent.runtime.http import TOKEN_ENV, is_loopback
from tests.web._agent import get, get_json, running_agent, wait_rows


async def test_api_status_shows_what_the_connectors_emitted_and_the_dataset_holds(tmp_path):
    async with running_agent(tmp_path) as agent:
        base = f"http://127.0.0.1:{agent.http_port}"
        await wait_rows(agent, 200)
        st = await get_json(base + "/api/status")
        n_emitted = agent.metrics.total_received()
    assert st["agent"]["id"] == "gw-web" and st["agent"]["status"] == "ok"
    conns = {c["id"]: c for c in st["connectors"]}
    assert set(conns) == {"casting", "machining"}
    assert all(c["state"] == "connected" and c["errors_total"] == 0 for c in conns.values())
    assert 0 < conns["casting"]["received"] <= n_emitted
    (sink,) = st["sinks"]
    assert sink["id"] == "raw" and sink["state"] == "connected" and sink["committed"] > 0
    assert sink["buffer"]["max_bytes"] == 1024**3 and 0 <= sink["buffer"]["fill"] < 1
    sig = {s["key"]: s for s in st["signals"]}
    assert st["signals_total"] == 3 and set(sig) == {
        "plant1/casting/line1/pourer/shot_counter", "plant1/casting/line1/pourer/melt_temperature",
        "plant1/machining/cell1/mill1/spindle_load"}
    counter = sig["plant1/casting/line1/pourer/shot_counter"]
    assert counter["unit"] == "1" and counter["severity"] == "good" and counter["quality_name"] == "good"
    assert counter["value"] == counter["count"]  # the counter counts 1, 2, 3, ...: last value == samples seen
    hist = [v for _, v in counter["history"]]
    assert 1 <= len(hist) <= 60 and hist == sorted(hist) and hist[-1] <= counter["value"]
    times = [t for t, _ in counter["history"]]
    assert all(b - a >= 1000 for a, b in zip(times, times[1:], strict=False))  # at most one point a second
    assert st["events"] == [] and st["processors"] == []
    # every value shown is a committed sample of that signal at that time
    t = ds.dataset(tmp_path / "data" / "raw", partitioning="hive").to_table().to_pandas()
    for key, s in sig.items():
        rows = t[(t["signal"] == key) & (t["time"] == pd.Timestamp(s["time_ns"] // 1000, unit="us", tz="UTC"))]
        assert len(rows) == 1, key
        assert rows["value"].iloc[0] == pytest.approx(s["value"])


async def test_filter_limit_and_routes(tmp_path):
    async with running_agent(tmp_path) as agent:
        base = f"http://127.0.0.1:{agent.http_port}"
        await wait_rows(agent, 50)
        st = await get_json(base + "/api/status?q=MILL1&limit=5")
        assert [s["name"] for s in st["signals"]] == ["spindle_load"] and st["signals_total"] == 1
        st = await get_json(base + "/api/status?limit=1")
        assert len(st["signals"]) == 1 and st["signals_total"] == 3
        code, _, _ = await get(base + "/api/status?limit=x")
        assert code == 400
        code, h, body = await get(base + "/")
        assert code == 200 and h["Content-Type"].startswith("text/html") and b"/static/app.js" in body
        assert "default-src 'self'" in h["Content-Security-Policy"]
        code, h, body = await get(base + "/static/app.js")
        assert code == 200 and h["Content-Type"].startswith("text/javascript") and b"/api/status" in body
        assert not re.search(rb"https?://(?!www\.w3\.org/2000/svg)", body)  # no CDN, works offline
        code, _, body = await get(base + "/metrics")
        assert code == 200 and b"axedge_samples_received" in body
        code, _, _ = await get(base + "/healthz")
        assert code == 200
        code, _, _ = await get(base + "/static/../agent.py")
        assert code == 404


def test_static_page_references_no_external_host():
    from edge_agent.runtime.http import _load_static

    files = _load_static()
    assert {"index.html", "app.js", "style.css"} <= set(files)
    for name, (_, body) in files.items():
        assert not re.search(rb"(src|href)=\"(https?:)?//", body), name
        assert b"@import" not in body and not re.search(rb"url\(\s*['\"]?(https?:)?//", body), name


async def test_token_required_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    async with running_agent(tmp_path) as agent:
        base = f"http://127.0.0.1:{agent.http_port}"
        for path in ("/", "/api/status", "/metrics"):
            code, h, _ = await get(base + path)
            assert code == 401 and "Bearer" in h["WWW-Authenticate"], path
        code, _, _ = await get(base + "/api/status", {"Authorization": "Bearer wrong"})
        assert code == 401
        code, _, _ = await get(base + "/api/status", {"Authorization": "Bearer s3cret-token"})
        assert code == 200
        code, _, _ = await get(base + "/healthz")  # liveness probes (Docker, systemd) need no token
        assert code == 200
        code, h, _ = await get(base + "/?token=s3cret-token")
        assert code == 200 and "HttpOnly" in h["Set-Cookie"]
        cookie = h["Set-Cookie"].split(";")[0]
        code, _, _ = await get(base + "/api/status", {"Cookie": cookie})
        assert code == 200


async def test_non_loopback_bind_without_token_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        async with running_agent(tmp_path, host="0.0.0.0"):
            pass


async def test_non_loopback_bind_with_token_serves(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "tok")
    async with running_agent(tmp_path, host="0.0.0.0") as agent:
        code, _, _ = await get(f"http://127.0.0.1:{agent.http_port}/api/status", {"Authorization": "Bearer tok"})
        assert code == 200


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("gateway.local")


async def test_non_get_is_refused(tmp_path):
    async with running_agent(tmp_path) as agent:
        r, w = await asyncio.open_connection("127.0.0.1", agent.http_port)
        w.write(b"POST /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        line = await r.readline()
        w.close()
    assert line.startswith(b"HTTP/1.1 405")


async def test_an_anomaly_processor_waiting_for_its_model_is_shown_with_the_reason(tmp_path):
    from tests.web._agent import CFG

    (tmp_path / "models" / "casting").mkdir(parents=True)  # no bundle trained yet
    text = CFG.format(root=tmp_path, host="127.0.0.1") + f"""processors:
  - {{id: casting, type: anomaly, model_dir: {tmp_path}/models/casting, asset: plant1/casting/line1/pourer}}
"""
    async with running_agent(tmp_path, config_text=text) as agent:
        await wait_rows(agent, 20)
        st = await get_json(f"http://127.0.0.1:{agent.http_port}/api/status")
    (p,) = st["processors"]
    assert p["id"] == "casting" and p["state"] != "running" and p["windows_scored"] == 0
    assert p["last_error"] and p["latency_ms_p50"] is None
    assert st["events"] == []
