"""axedge doctor: directory checks, classification, table, exit status (no devices needed)."""

import json
import os

import numpy as np

from dataset_builder.format import Quality
from edge_agent.core.chunk import SampleChunk
from edge_agent.doctor import FAIL, OK, WARN, Check, _best_quality, _classify, _Collector, check_dir, main, render
from edge_agent.errors import ConnectorTimeout, NotConnected, ProtocolError, SecurityError


def test_check_dir_writable_missing_dir_is_created_later(tmp_path):
    checks = check_dir("data", tmp_path / "a" / "b", 1)
    assert [c.status for c in checks] == [OK, OK]
    assert "will be created in" in checks[0].detail and str(tmp_path) in checks[0].detail
    assert not (tmp_path / "a").exists()  # the doctor creates nothing
    assert not list(tmp_path.iterdir())  # and leaves no probe file behind


def test_check_dir_parent_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    (c,) = check_dir("state", tmp_path / "f" / "state", 1)
    assert c.status == FAIL and "is not a directory" in c.detail and "agent.state_dir" in c.fix


def test_check_dir_not_enough_space_and_world_writable(tmp_path):
    os.chmod(tmp_path, 0o777)
    checks = check_dir("state", tmp_path, 1 << 62)
    by = {c.check: c for c in checks if c.status != OK}
    assert by["permissions"].status == WARN and "world-writable" in by["permissions"].detail
    assert by["disk space"].status == FAIL and "buffer.max_bytes" in by["disk space"].fix


def test_classify_errors():
    assert _classify(SecurityError("x"))[0] == "security / login"
    assert _classify(NotConnected("x"))[0] == "reachable"
    assert _classify(ConnectorTimeout("x"))[0] == "reachable"
    assert _classify(TimeoutError())[0] == "reachable"
    assert _classify(ProtocolError("x"))[0] == "sample read"


def test_best_quality_a_good_read_wins():
    col = _Collector()
    mk = lambda ids, q: SampleChunk.from_values(np.array(ids, np.int32), np.array([1.0] * len(ids)), quality=np.array(q, np.uint32))  # noqa: E731
    import asyncio

    asyncio.run(col.send(mk([0, 1, 2], [Quality.BAD_TIMEOUT, 0, Quality.UNCERTAIN])))
    asyncio.run(col.send(mk([0, 1], [0, Quality.BAD_TIMEOUT])))
    assert _best_quality(col) == {0: 0, 1: 0, 2: Quality.UNCERTAIN}


def test_render_lists_fixes_for_failures_only():
    out = render([Check(OK, "plc", "reachable", "connected", "never shown"),
                  Check(FAIL, "press", "reachable", "refused", "check the cable"),
                  Check(WARN, "mill", "clock offset", "+5s", "run chrony")])
    assert "never shown" not in out and "-> fix: check the cable" in out and "-> fix: run chrony" in out
    assert out.splitlines()[-1] == "1 failed, 1 warnings, 1 ok"
    assert render([Check(OK, "a", "b", "c")]).splitlines()[-1] == "all 1 checks ok"


def test_main_exit_status_and_json(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(f"agent: {{data_dir: {tmp_path}/d, state_dir: {tmp_path}/s}}\nbuffer: {{max_bytes: 1MiB}}\nconnectors: []\n")
    assert main([str(good), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is True and {c["component"] for c in rep["checks"]} == {"config", "sink raw", "data dir", "state dir"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: {nonsense: 1}\n")
    assert main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "bad.yaml" in out and "nonsense" in out
