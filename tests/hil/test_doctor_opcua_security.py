"""``axedge doctor`` on a secured OPC UA server (the machine tool simulator in its own process):
trusted certificate and login pass; an untrusted server certificate and a wrong password fail
with the way to fix them, and no secret is printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hardware.machine_tool import MachineToolProcess

ROOT = Path(__file__).resolve().parents[2]
NODE = "nsu=urn:axedge:sim:machine-tool;s=MachineTool1.Monitoring/Spindle/ActualSpeed"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def secured_sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("mtsec")
    p = MachineToolProcess("--security", "sign,encrypt", "--cert-dir", str(d / "pki"), "--user", "operator:s3cret-pw",
                           "--no-anonymous", "--update-hz", "10", log_path=d / "sim.log")
    p.start()
    yield p
    p.stop()


def conn(cid: str, endpoint: str, security: dict, password: str) -> dict:
    return {"id": cid, "type": "opcua_polling", "asset": f"plant1/machining/line1/{cid}", "endpoint": endpoint,
            "poll_interval_secs": 1, "security": security,
            "identity": {"kind": "username", "username": "operator", "password": password},
            "nodes": [{"name": "spindle_speed", "node_id": NODE}]}


def test_trust_and_login_checked_as_configured(secured_sim, tmp_path):
    fp = secured_sim.info["server_fingerprint_sha256"]
    trust = tmp_path / "trusted"
    trust.mkdir()
    cfg = {"agent": {"data_dir": str(tmp_path / "data"), "state_dir": str(tmp_path / "state")},
           "buffer": {"max_bytes": "1MiB"},
           "connectors": [
               conn("good", secured_sim.endpoint, {"mode": "SignAndEncrypt", "server_fingerprint_sha256": fp}, "s3cret-pw"),
               conn("untrusted", secured_sim.endpoint, {"mode": "SignAndEncrypt", "trust_dir": str(trust)}, "s3cret-pw"),
               conn("badpass", secured_sim.endpoint, {"mode": "Sign", "server_fingerprint_sha256": fp}, "wrong-pw-123"),
           ]}
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "edge_agent.cli", "doctor", str(path), "--json", "--timeout-secs", "10"],
                       capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert r.returncode == 1, r.stderr
    assert "wrong-pw-123" not in r.stdout + r.stderr and "s3cret-pw" not in r.stdout + r.stderr
    checks = json.loads(r.stdout)["checks"]
    by = {(c["component"], c["check"]): c for c in checks}
    good = by[("good", "security / login")]
    assert good["status"] == "ok"
    assert good["detail"] == "mode SignAndEncrypt, policy Basic256Sha256, server certificate pinned, identity username operator"
    assert by[("good", "sample read")]["status"] == "ok" and by[("good", "clock offset")]["status"] == "ok"
    bad_trust = by[("untrusted", "security / login")]
    assert bad_trust["status"] == "FAIL" and "server certificate is not trusted" in bad_trust["detail"]
    assert fp in bad_trust["detail"]
    # the hint names the rejected certificate where the agent keeps it: the operator can review and trust it
    rejected = tmp_path / "state" / "connectors" / "untrusted" / "opcua-pki" / "rejected"
    assert str(rejected) in bad_trust["fix"] and any(rejected.iterdir())
    bad_login = by[("badpass", "security / login")]
    assert bad_login["status"] == "FAIL" and "identity rejected" in bad_login["detail"] and "password" in bad_login["fix"]
    assert by[("untrusted", "sample read")]["status"] == "skip"  # nothing to read without a session
