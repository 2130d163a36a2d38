"""sd_notify over a real Unix datagram socket, as systemd's NOTIFY_SOCKET."""

import asyncio
import os
import socket

import pytest

from edge_agent.runtime import sdnotify


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield s
    s.close()


def test_ready_status_stopping_reach_the_socket(notify_socket):
    assert sdnotify.notify("READY=1", "STATUS=collecting from 3 connectors")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=collecting from 3 connectors"
    assert sdnotify.notify("STOPPING=1")
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_abstract_socket(monkeypatch):
    name = f"axedge-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1")
        assert s.recv(64) == b"READY=1"
    finally:
        s.close()


def test_no_op_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None  # meant for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_USEC", "junk")
    assert sdnotify.watchdog_interval() is None


async def test_watchdog_loop_pings_only_while_healthy(notify_socket):
    healthy = {"ok": True}
    task = asyncio.create_task(sdnotify.watchdog_loop(0.02, lambda: healthy["ok"]))
    got = await asyncio.to_thread(notify_socket.recv, 64)
    assert got == b"WATCHDOG=1"
    healthy["ok"] = False
    await asyncio.sleep(0.05)
    notify_socket.setblocking(False)
    while True:  # drain pings sent before the flag flipped
        try:
            notify_socket.recv(64)
        except BlockingIOError:
            break
    await asyncio.sleep(0.1)
    with pytest.raises(BlockingIOError):
        notify_socket.recv(64)
    task.cancel()
