"""The agent's HTTP endpoint: the live status page, its JSON API, ``/metrics`` and ``/healthz``.

Plain asyncio streams, no web framework: a handful of read-only GET routes.

- ``/`` the status page (``edge_agent/web/static``: HTML, JS, CSS shipped as package data; no
  build step, no CDN, works offline), ``/static/<file>``
- ``/api/status?q=<filter>&limit=<n>`` connectors, sinks and buffers, signals with last value,
  unit, quality and sparkline history, anomaly events (see :mod:`edge_agent.web.api`)
- ``/metrics`` Prometheus text, ``/healthz`` JSON (200 ok, 503 degraded)

Bound to 127.0.0.1 by default. When ``AXEDGE_HTTP_TOKEN`` is set every route but ``/healthz``
needs it (``Authorization: Bearer <token>``, or ``/?token=<token>`` once, which sets an HttpOnly
cookie for the page); binding to a non-loopback address without a token is refused.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge_agent.errors import ConfigError

if TYPE_CHECKING:
    from edge_agent.runtime.agent import Agent

TOKEN_ENV = "AXEDGE_HTTP_TOKEN"
_COOKIE = "axedge_token"
_MAX_HEADERS = 64
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_SECURITY_HEADERS = (
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n"
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_static() -> dict[str, tuple[str, bytes]]:
    root = resources.files("edge_agent.web") / "static"
    out = {}
    for f in root.iterdir():
        ext = os.path.splitext(f.name)[1]
        if ext in _STATIC_TYPES:
            out[f.name] = (_STATIC_TYPES[ext], f.read_bytes())
    return out


class _Request:
    __slots__ = ("method", "path", "query", "headers")

    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        u = urlsplit(target)
        self.method, self.path, self.headers = method, u.path or "/", headers
        self.query = {k: v[-1] for k, v in parse_qs(u.query).items()}


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


async def serve_http(agent: Agent, host: str, port: int, *, token: str | None = None) -> asyncio.Server:
    """Start the server; also hooks a :class:`~edge_agent.web.tap.LastValues` tap into
    ``agent.on_batch`` so the page sees the latest value of every signal."""
    from edge_agent.web.api import status
    from edge_agent.web.tap import LastValues

    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"agent.http.listen_host {host!r} is not a loopback address and no access token is set",
            hint=f"set {TOKEN_ENV} (e.g. from a systemd credential or a Docker secret), or bind 127.0.0.1")
    tap = LastValues()
    agent.on_batch.append(tap.update)
    agent.last_values = tap
    static = _load_static()

    def authorised(req: _Request) -> tuple[bool, str | None]:
        """(ok, cookie to set)."""
        if token is None:
            return True, None
        auth = req.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else None
        if given is None:
            given = _cookie(req.headers, _COOKIE)
        if given is not None and hmac.compare_digest(given.encode(), token.encode()):
            return True, None
        q = req.query.get("token")
        if q is not None and hmac.compare_digest(q.encode(), token.encode()):
            return True, f"{_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
        return False, None

    def route(req: _Request) -> tuple[str, str, bytes, str]:
        """(status, content type, body, extra headers)."""
        if req.method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"read-only endpoint\n", "Allow: GET, HEAD\r\n"
        p = req.path
        if p == "/healthz":
            h = agent.health()
            return ("200 OK" if h["status"] == "ok" else "503 Service Unavailable"), "application/json", json.dumps(h).encode(), ""
        ok, set_cookie = authorised(req)
        if not ok:
            return ("401 Unauthorized", "text/plain", b"access token required (Authorization: Bearer, or /?token=)\n",
                    'WWW-Authenticate: Bearer realm="axedge"\r\n')
        extra = f"Set-Cookie: {set_cookie}\r\n" if set_cookie else ""
        if p == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(agent.metrics.registry), extra
        if p == "/api/status":
            try:
                limit = max(1, min(10_000, int(req.query.get("limit", "200"))))
            except ValueError:
                return "400 Bad Request", "text/plain", b"limit must be an integer\n", extra
            body = json.dumps(status(agent, tap, query=req.query.get("q", ""), limit=limit)).encode()
            return "200 OK", "application/json", body, extra + "Cache-Control: no-store\r\n"
        name = "index.html" if p in ("/", "/index.html") else p[len("/static/"):] if p.startswith("/static/") else None
        if name in static:
            ctype, body = static[name]
            return "200 OK", ctype, body, extra
        return "404 Not Found", "text/plain", b"try /, /api/status, /metrics or /healthz\n", extra

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            headers: dict[str, str] = {}
            for _ in range(_MAX_HEADERS + 1):
                h = await asyncio.wait_for(reader.readline(), 5.0)
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            else:
                raise ConnectionError("too many headers")
            parts = line.decode("latin-1").split()
            req = _Request(parts[0] if parts else "", parts[1] if len(parts) >= 2 else "/", headers)
            status_line, ctype, body, extra = route(req)
            head = (f"HTTP/1.1 {status_line}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    f"{_SECURITY_HEADERS}{extra}Connection: close\r\n\r\n")
            writer.write(head.encode("latin-1") + (body if req.method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # a slow, broken or oversized request: the connection is closed below
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
