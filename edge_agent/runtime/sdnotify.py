"""A tiny sd_notify client (no libsystemd): tell systemd the agent is ready, alive, stopping.

Usage from the agent::

    from edge_agent.runtime import sdnotify
    sdnotify.notify("READY=1")            # after startup (sinks, core, connectors started)
    sdnotify.notify("STOPPING=1")         # when an orderly shutdown begins
    interval = sdnotify.watchdog_interval()  # None unless the unit sets WatchdogSec=
    if interval:
        tg.create_task(sdnotify.watchdog_loop(interval, healthy=lambda: ...))

Without ``$NOTIFY_SOCKET`` (not under systemd, tests, Docker) every call is a cheap no-op that
returns False. Datagrams go to the path socket or the abstract socket (``@...``) systemd names.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

__all__ = ["notify", "watchdog_interval", "watchdog_loop"]


def _address(raw: str) -> str | bytes:
    return "\0" + raw[1:] if raw.startswith("@") else raw


def notify(*states: str) -> bool:
    """Send ``states`` (e.g. ``"READY=1"``, ``"STATUS=collecting"``) in one datagram. Returns
    True if sent, False when not running under systemd. OSError from the socket propagates."""
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw or not states:
        return False
    msg = "\n".join(states).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(_address(raw))
        s.sendall(msg)
    return True


def watchdog_interval() -> float | None:
    """Seconds between keep-alive pings: half of ``$WATCHDOG_USEC`` (set by ``WatchdogSec=``), or
    None when no watchdog is configured or it is meant for another process (``$WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


async def watchdog_loop(interval: float, healthy: Callable[[], bool] = lambda: True) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds while ``healthy()`` is true; run it as a task
    of the agent's event loop, so a blocked loop misses pings and systemd restarts the agent."""
    while True:
        if healthy():
            notify("WATCHDOG=1")
        await asyncio.sleep(interval)
