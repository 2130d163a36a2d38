"""The connector contract.

Lifecycle (CONVENTIONS 2): the constructor only stores config; ``connect()`` opens the session;
``run()`` streams or polls until cancelled (the default ``run()`` calls ``poll()`` on a
drift-free schedule every ``poll_interval_secs``); ``aclose()`` is idempotent. The runtime
(:class:`edge_agent.runtime.running.RunningConnector`) owns reconnects, backoff and the
startup-error policy: a connector only raises typed errors from :mod:`edge_agent.errors`
(transient ones are retried, others stop it).

A connector section may expand into several *units* (``build(config, ctx) -> list[Connector]``):
e.g. one unit per Modbus device, so that a dead device never delays another. Each unit is
supervised on its own.

Connectors emit :class:`~edge_agent.core.chunk.SampleChunk` objects through ``ctx.emit``; they
never write files. Bad payloads go to ``ctx.quarantine(raw, reason)`` (bounded, counted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.core.chunk import SampleChunk
from edge_agent.signals import SignalCatalog, SignalSpec


class ConnectorMetrics:
    """The counters every connector feeds. The runtime binds them to Prometheus; tests can use
    this plain implementation and read the numbers back."""

    def __init__(self) -> None:
        self.received = 0
        self.errors: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.quarantined: dict[str, int] = {}
        self.events: dict[str, int] = {}  # protocol events that are not errors (e.g. Sparkplug rebirth requests)
        self.gaps = 0

    def count_received(self, n: int) -> None:
        self.received += n

    def count_error(self, type_: str, n: int = 1) -> None:
        self.errors[type_] = self.errors.get(type_, 0) + n

    def count_event(self, type_: str, n: int = 1) -> None:
        self.events[type_] = self.events.get(type_, 0) + n

    def count_dropped(self, n: int, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def count_quarantined(self, reason: str) -> None:
        self.quarantined[reason] = self.quarantined.get(reason, 0) + 1

    def count_gap(self, n: int) -> None:
        self.gaps += n


@dataclass
class ConnectorContext:
    """What the runtime hands a connector."""

    connector_id: str
    catalog: SignalCatalog
    send: Callable[[SampleChunk], Awaitable[bool]]
    metrics: ConnectorMetrics = field(default_factory=ConnectorMetrics)
    state_dir: Path | None = None
    quarantine_sink: Callable[[str, bytes, str, dict[str, Any]], None] | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("axedge.connector"))
    clock: Callable[[], float] = time.monotonic
    on_data: Callable[[], None] | None = None  # the runtime's liveness hook (connected-but-silent watch)

    def register(self, spec: SignalSpec, *, replace: bool = False) -> int:
        return self.catalog.register(spec, replace=replace)

    async def emit(self, chunk: SampleChunk) -> bool:
        """Hand a chunk to the core. Returns False when the channel policy dropped it (counted
        by the channel). With ``when_full: block`` this waits for room (back-pressure)."""
        n = len(chunk)
        if n == 0 and chunk.on_durable is None:
            return True
        self.metrics.count_received(n)
        if self.on_data is not None:
            self.on_data()
        return await self.send(chunk)

    async def emit_gap(self, signal_ids, quality: int) -> bool:
        """Bad-quality null rows for ``signal_ids`` (a failed read), counted as gaps."""
        chunk = SampleChunk.gap(signal_ids, quality)
        self.metrics.count_gap(len(chunk))
        return await self.send(chunk)

    def quarantine(self, raw: bytes, reason: str, **meta: Any) -> None:
        """Keep a bad payload (raw bytes and the reason) in the bounded quarantine area."""
        self.metrics.count_quarantined(reason)
        if self.quarantine_sink is not None:
            self.quarantine_sink(self.connector_id, raw, reason, meta)


class Connector(ABC):
    """Base class for connector units."""

    #: seconds between ``poll()`` calls for the default ``run()``; None for streaming connectors
    poll_interval_secs: float | None = None

    def __init__(self, config: Any, ctx: ConnectorContext, name: str | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.name = name or ctx.connector_id

    async def connect(self) -> None:  # noqa: B027 - optional hook
        """Open the session / socket. Raise NotConnected (transient) or SecurityError etc."""

    async def poll(self) -> None:
        """One acquisition cycle (poll-mode connectors)."""
        raise NotImplementedError(f"{type(self).__name__} must implement poll() or run()")

    async def run(self) -> None:
        """Run until cancelled. Default: call ``poll()`` on a drift-free schedule; a cycle that
        overruns skips the missed ticks (counted as ``poll_overrun``) instead of bursting."""
        interval = self.poll_interval_secs
        if not interval or interval <= 0:
            raise NotImplementedError(f"{type(self).__name__} must set poll_interval_secs or override run()")
        await ticker(interval, self.poll, self.ctx.clock, lambda n: self.ctx.metrics.count_error("poll_overrun", n))

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Close the session. Must be idempotent and must not raise for an unopened connector."""

    async def probe(self) -> dict[str, Any]:
        """Connect, do one cycle, close: backs ``axedge validate --probe`` and ``axedge doctor``."""
        await self.connect()
        try:
            if self.poll_interval_secs:
                await self.poll()
        finally:
            await self.aclose()
        return {"ok": True}


async def ticker(
    interval: float,
    fn: Callable[[], Awaitable[Any]],
    clock: Callable[[], float] = time.monotonic,
    on_overrun: Callable[[int], None] | None = None,
) -> None:
    """Call ``fn`` every ``interval`` seconds on a fixed grid until cancelled."""
    next_t = clock()
    while True:
        await fn()
        next_t += interval
        now = clock()
        if now > next_t:
            missed = int((now - next_t) // interval) + 1
            if on_overrun is not None:
                on_overrun(missed)
            next_t += missed * interval
        await asyncio.sleep(max(0.0, next_t - now))
