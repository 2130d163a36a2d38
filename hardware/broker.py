"""An embedded MQTT broker (amqtt) for the demo: no set-up, loopback only, anonymous.

Tests use a real Mosquitto (``tests/_mosquitto.py``); this broker exists so that
``axedge sim sensors`` and the demo work on a machine without one. It imports nothing of the agent.

Run: ``python -m hardware.broker --port 0`` (prints ``{"url": "mqtt://127.0.0.1:N"}``) or
``axedge sim broker``. In-process: ``async with EmbeddedBroker() as b: print(b.url)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """amqtt broker on ``host:port`` (``port=0``: a free port, see :attr:`url`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._broker = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        from amqtt.broker import Broker

        for name in ("amqtt", "transitions"):  # quiet by default; a caller's stricter level stays
            lg = logging.getLogger(name)
            lg.setLevel(max(lg.level, logging.WARNING))
        if self.port == 0:
            self.port = _free_port(self.host)
        self._broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        })
        await self._broker.start()

    async def stop(self) -> None:
        b, self._broker = self._broker, None
        if b is not None:
            await b.shutdown()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(host: str, port: int, duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with EmbeddedBroker(host, port) as b:
        print(json.dumps({"url": b.url, "host": b.host, "port": b.port}), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="axedge sim broker", description="Embedded MQTT broker (amqtt) for the demo")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1884, help="TCP port; 0 picks a free port (printed as JSON)")
    p.add_argument("--duration-secs", type=float, default=None, help="stop after this many seconds (default: until SIGINT/SIGTERM)")
    args = p.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, args.duration_secs))
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
