"""RunningConnector: supervises one connector unit (connect, run, reconnect, startup policy).

The runtime owns reconnects (CONVENTIONS 2): connectors only raise typed errors. Each unit runs
in its own task, so one failing device never stalls another.

Departure from "a real bug crashes loudly": an unexpected exception inside one connector unit is
logged with its traceback, counted as ``errors{type="internal"}`` and retried with backoff like a
transient error, instead of taking the whole gateway down; other devices keep flowing. The
durable buffer would make a crash safe, but on a gateway a crash loop would stop every device.
"""

from __future__ import annotations

import asyncio
import logging
import time

from connectors.base import Connector
from edge_agent.config.base import OnStartupError
from edge_agent.errors import AxedgeError, SecurityError, is_transient
from edge_agent.runtime.backoff import Backoff

log = logging.getLogger("axedge.runtime")


class StartupFailed(AxedgeError):
    """A connector with ``on_startup_error: error`` could not start."""


class RunningConnector:
    def __init__(
        self,
        unit: Connector,
        *,
        on_startup_error: OnStartupError = OnStartupError.retry,
        backoff: Backoff,
        on_reconnect=None,
        stable_after_secs: float | None = None,
    ) -> None:
        self.unit = unit
        self.name = unit.name
        self.policy = OnStartupError(on_startup_error)
        self.backoff = backoff
        self.state = "starting"
        self.last_error: str | None = None
        self._on_reconnect = on_reconnect or (lambda: None)
        self._stable_after = stable_after_secs if stable_after_secs is not None else max(10.0, backoff.cap)
        self.started_ok = asyncio.Event()

    async def _close_quietly(self) -> None:
        try:
            await asyncio.wait_for(self.unit.aclose(), 5.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - closing a broken session may fail in any way; recorded
            log.debug("close failed", extra={"connector": self.name, "error": repr(exc)})

    async def run(self) -> None:
        ever_connected = False
        try:
            while True:
                t_connected = None
                try:
                    await self.unit.connect()
                    ever_connected = True
                    t_connected = time.monotonic()
                    self.state = "connected"
                    self.last_error = None
                    self.started_ok.set()
                    log.info("connector connected", extra={"connector": self.name})
                    await self.unit.run()
                    log.info("connector finished", extra={"connector": self.name})
                    self.state = "stopped"
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - supervisor boundary; every path below records it
                    await self._close_quietly()
                    self.last_error = str(exc)
                    etype = type(exc).__name__ if isinstance(exc, AxedgeError) else ("io" if is_transient(exc) else "internal")
                    self.unit.ctx.metrics.count_error(etype)
                    if not ever_connected:
                        if self.policy is OnStartupError.error:
                            self.state = "stopped"
                            raise StartupFailed(f"connector {self.name!r} could not start: {exc}") from exc
                        if self.policy is OnStartupError.ignore:
                            self.state = "stopped"
                            log.error("connector could not start; ignored by on_startup_error=ignore",
                                      extra={"connector": self.name, "error": str(exc)})
                            return
                    if t_connected is not None and time.monotonic() - t_connected > self._stable_after:
                        self.backoff.reset()
                    self.state = "failing"
                    delay = self.backoff.next_delay()
                    if isinstance(exc, SecurityError):
                        delay = max(delay, self.backoff.cap)
                    if etype == "internal":
                        log.exception("connector crashed; retrying", extra={"connector": self.name, "retry_in_secs": round(delay, 2)})
                    else:
                        log.warning("connector failing; retrying", extra={"connector": self.name, "error": str(exc), "retry_in_secs": round(delay, 2)})
                    self._on_reconnect()
                    await asyncio.sleep(delay)
        finally:
            if self.state != "stopped":
                await self._close_quietly()
                self.state = "stopped"
            else:
                await self._close_quietly()
