"""``axedge doctor`` (a real process) against the real simulators: the casting line PLC over Modbus
TCP, the machine tool over OPC UA, a Mosquitto broker with logins; then a down device, a wrong
password, an unreachable uplink and an unwritable data directory."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import pytest
import yaml

from hardware.casting_line import CastingLineSim
from hardware.machine_tool import MachineToolThread
from tests._mosquitto import USERS, mosquitto  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def plant_config(root: Path, modbus_port: int, opcua_endpoint: str, mqtt_port: int, *, mqtt_password: str,
                 extra_modbus=(), data_dir: str | None = None, uplink_port: int | None = None) -> Path:
    modbus = yaml.safe_load((ROOT / "examples" / "casting-line.yaml").read_text())["connectors"][0]
    modbus["devices"][0]["port"] = modbus_port
    modbus["devices"].extend(extra_modbus)
    mt = yaml.safe_load((ROOT / "examples" / "machine-tool.yaml").read_text())["connectors"]
    for c in mt:
        c["endpoint"] = opcua_endpoint
    mqtt = {"id": "sensors", "type": "mqtt", "asset": "plant1/sensors",
            "broker": {"host": "127.0.0.1", "port": mqtt_port, "username": "axedge", "password": mqtt_password,
                       "client_id": "gw-sensors-in", "session": "persistent"},
            "subscriptions": [{"topic": "plant/{line}/{asset}/{signal}", "format": "json", "qos": 1}]}
    cfg = {"agent": {"id": "gw-doctor", "data_dir": data_dir or str(root / "data"), "state_dir": str(root / "state")},
           "buffer": {"max_bytes": "64MiB"},
           "sinks": [{"id": "raw", "type": "parquet"}],
           "connectors": [modbus, *mt, mqtt]}
    if uplink_port is not None:
        cfg["sinks"].append({"id": "uplink", "type": "mqtt_uplink",
                             "broker": {"host": "127.0.0.1", "port": uplink_port, "connect_timeout_secs": 2}})
    path = root / "plant.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


async def doctor(cfg: Path) -> tuple[int, dict, str]:
    """Run ``axedge doctor --json`` as a process; the table is rendered from the same checks."""
    from edge_agent.doctor import Check, render

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.cli", "doctor", str(cfg), "--timeout-secs", "5", "--listen-secs", "1.5", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    out, err = await proc.communicate()
    rep = json.loads(out)
    return proc.returncode, rep, render([Check(**c) for c in rep["checks"]])


class Publisher:
    """A sensor publishing JSON on ``plant/line1/press1/temperature`` every 50 ms while the doctor runs."""

    def __init__(self, port: int) -> None:
        import threading

        import paho.mqtt.client as paho

        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="doctor-test-sensor")
        self.client.username_pw_set("sensor", USERS["sensor"])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.client.publish("plant/line1/press1/temperature", json.dumps({"value": 42.5}), qos=1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.client.loop_stop()
        self.client.disconnect()


def rows(report, component=None, check=None, status=None):
    return [c for c in report["checks"] if (component is None or c["component"] == component)
            and (check is None or c["check"] == check) and (status is None or c["status"] == status)]


async def test_healthy_plant_passes_every_check(tmp_path, mosquitto):  # noqa: F811
    async with CastingLineSim(port=0, tick_secs=0.1, seed=3) as plc:
        with MachineToolThread(update_hz=10, cycle_secs=3) as mt:
            cfg = plant_config(tmp_path, plc.port, mt.endpoint, mosquitto.auth_port, mqtt_password=USERS["axedge"],
                               uplink_port=mosquitto.plain_port)
            pub = Publisher(mosquitto.auth_port)
            try:
                rc, rep, table = await doctor(cfg)
            finally:
                pub.close()
    assert rc == 0, table
    assert rows(rep, "sink uplink", "reachable", "ok")[0]["detail"].endswith(f":{mosquitto.plain_port}: connected")
    assert rep["ok"] is True and not rows(rep, status="FAIL")
    assert "all " in table and "checks ok" in table
    n_modbus = len(yaml.safe_load((ROOT / "examples" / "casting-line.yaml").read_text())["connectors"][0]["devices"][0]["units"][0]["signals"])
    (sample,) = rows(rep, "casting-plc", "sample read")
    assert sample["status"] == "ok" and sample["detail"].startswith(f"{n_modbus}/{n_modbus} signals read with good quality")
    for cid in ("mill01", "mill01-slow"):
        (s,) = rows(rep, cid, "sample read")
        assert s["status"] == "ok", s
        (clock,) = rows(rep, cid, "clock offset")  # OPC UA gives server time; simulator runs on this clock
        assert clock["status"] == "ok" and abs(float(clock["detail"].split()[2].rstrip("s"))) < 2.0
    assert not rows(rep, "casting-plc", "clock offset")  # Modbus carries no server time
    assert rows(rep, "sensors", "security / login", "ok")[0]["detail"] == "plain tcp, user axedge"
    (mq,) = rows(rep, "sensors", "sample read")
    assert mq["status"] == "ok" and mq["detail"].startswith("1/1 signals read"), mq  # plant/line1/press1/temperature
    assert {c["status"] for c in rows(rep, "data dir") + rows(rep, "state dir")} == {"ok"}


async def test_down_device_wrong_password_dead_uplink_and_unwritable_dir_fail_with_fixes(tmp_path, mosquitto):  # noqa: F811
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory's parent should be")
    dead = {"name": "press-2", "transport": "tcp", "host": "127.0.0.1", "port": closed_port(), "request_timeout_secs": 1.0,
            "units": [{"unit_id": 1, "asset": "plant1/press/line2/press2",
                       "signals": [{"name": "force", "table": "holding", "address": 0, "type": "float32", "unit": "kN"}]}]}
    async with CastingLineSim(port=0, tick_secs=0.1, seed=3) as plc:
        with MachineToolThread(update_hz=10, cycle_secs=3) as mt:
            cfg = plant_config(tmp_path, plc.port, mt.endpoint, mosquitto.auth_port, mqtt_password="wrong-password",
                               extra_modbus=[dead], data_dir=str(blocker / "data"), uplink_port=closed_port())
            c = yaml.safe_load(cfg.read_text())
            c["connectors"].append({  # logs in fine, but the ACL does not let this user read plant/#
                "id": "reader", "type": "mqtt", "asset": "plant1/public",  # MQTT 5: the broker says so in the SUBACK
                "broker": {"host": "127.0.0.1", "port": mosquitto.auth_port, "username": "reader", "password": USERS["reader"],
                           "protocol": "5"},
                "subscriptions": [{"topic": "plant/{line}/{asset}/{signal}", "format": "json", "qos": 1}]})
            cfg.write_text(yaml.safe_dump(c, sort_keys=False))
            pub = Publisher(mosquitto.auth_port)
            try:
                rc, rep, table = await doctor(cfg)
            finally:
                pub.close()
    assert rc == 1 and rep["ok"] is False
    assert "-> fix:" in table and "failed" in table
    (down,) = [c for c in rows(rep, check="reachable", status="FAIL") if c["component"] == "casting-plc/press-2"]
    assert "press-2" in down["detail"] or str(dead["port"]) in down["detail"]
    assert down["fix"]
    # the live device on the same connector is still checked and fine
    assert rows(rep, "casting-plc/casting-line", "reachable", "ok")
    sig = [c for c in rows(rep, "casting-plc", "signal", "FAIL") if "press2/force" in c["detail"]]
    assert len(sig) == 1 and "no value" in sig[0]["detail"]
    (login,) = rows(rep, "sensors", "security / login", "FAIL")
    assert "refused the login" in login["detail"] and "password" in login["fix"]
    assert "wrong-password" not in json.dumps(rep) and "wrong-password" not in table  # secrets never printed
    # mosquitto accepts the subscription and silently withholds the messages: the doctor says so
    assert rows(rep, "reader", "security / login", "ok")
    (acl,) = rows(rep, "reader", "sample read", "warn")
    assert "no message arrived" in acl["detail"] and "ACL" in acl["fix"] and "'reader'" in acl["fix"]
    assert rows(rep, "sink uplink", "reachable", "FAIL")[0]["fix"]
    (perm,) = rows(rep, "data dir", "permissions", "FAIL")
    assert "not a directory" in perm["detail"] and "data_dir" in perm["fix"]
    assert rows(rep, "state dir", "permissions", "ok")
    assert rows(rep, "mill01", "sample read", "ok")  # OPC UA unaffected


def _check_dir_as(user: str, label: str, path: Path) -> list[dict]:
    """Run the doctor's directory check in a forked child that dropped to ``user`` (the
    interpreter need not be readable by that user: nothing is exec'd)."""
    import pwd
    from dataclasses import asdict

    from edge_agent.doctor import check_dir

    pw = pwd.getpwnam(user)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os.write(w, json.dumps([asdict(c) for c in check_dir(label, path, 1)]).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_directory_not_writable_by_the_service_user(tmp_path_factory):
    """As on a gateway: the agent runs as a dedicated user that does not own the data directory."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="axedge-doctor-perm-"))  # under /tmp, which the service user can traverse
    try:
        os.chmod(base, 0o755)
        _unwritable_checks(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _unwritable_checks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (perm,) = [c for c in _check_dir_as("nobody", "data", data) if c["check"] == "permissions"]
    assert perm["status"] == "FAIL" and "not writable by nobody" in perm["detail"], perm
    assert f"chown -R nobody {data}" in perm["fix"]
    (perm,) = [c for c in _check_dir_as("nobody", "state", tmp_path / "state" / "buffers") if c["check"] == "permissions"]
    assert perm["status"] == "FAIL" and str(tmp_path) in perm["detail"]  # nearest existing parent is checked
    os.chown(data, __import__("pwd").getpwnam("nobody").pw_uid, -1)
    (perm,) = [c for c in _check_dir_as("nobody", "data", data) if c["check"] == "permissions"]
    assert perm["status"] == "ok", perm
