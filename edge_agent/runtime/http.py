"""A tiny HTTP endpoint: ``/metrics`` (Prometheus text) and ``/healthz`` (JSON).

Bound to 127.0.0.1 by default. Plain asyncio streams: no web framework on the gateway for two
read-only endpoints.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from edge_agent.runtime.agent import Agent


async def serve_http(agent: Agent, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            while True:  # drain headers
                h = await asyncio.wait_for(reader.readline(), 5.0)
                if h in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else "/"
            method = parts[0] if parts else ""
            if method not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"read-only endpoint\n"
            elif path.startswith("/metrics"):
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(agent.metrics.registry)
            elif path.startswith("/healthz"):
                h = agent.health()
                status = "200 OK" if h["status"] == "ok" else "503 Service Unavailable"
                ctype, body = "application/json", json.dumps(h).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"try /metrics or /healthz\n"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
