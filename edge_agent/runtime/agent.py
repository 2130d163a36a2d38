"""The Agent: sinks -> core -> connectors, one asyncio TaskGroup, orderly shutdown.

Start order is sinks (open datasets, recover, replay buffers), then the core (channel and
batcher), then connectors; shutdown is the reverse inside ``agent.shutdown_deadline_secs``:
connectors stop, the channel is drained, the last batch flushed into the buffers, the sinks drain
their buffers and commit every open file (Telegraf ``agent/agent.go``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.base import ConnectorContext, ConnectorMetrics
from connectors.registry import connector_factory
from edge_agent.buffer import open_buffer
from edge_agent.config.models import AgentConfig, BufferKind
from edge_agent.core.batcher import Batcher, BatchPolicy
from edge_agent.core.channel import BoundedChannel, ChannelClosed
from edge_agent.errors import AxedgeError, DatasetError
from edge_agent.metrics import AgentMetrics
from edge_agent.processors.anomaly import AnomalyProcessor
from edge_agent.quarantine import Quarantine
from edge_agent.runtime import sdnotify
from edge_agent.runtime.backoff import Backoff
from edge_agent.runtime.memory import arrow_pool_name, tune_malloc
from edge_agent.runtime.running import RunningConnector, StartupFailed
from edge_agent.runtime.sink_runner import SinkRunner
from edge_agent.signals import CatalogFile, SignalCatalog, load_catalog
from edge_agent.sinks.base import SinkContext, SinkMetrics
from edge_agent.sinks.registry import sink_factory

log = logging.getLogger("axedge.agent")


def _sd_notify(*states: str) -> None:
    """Tell systemd (Type=notify units); a no-op elsewhere. A broken socket is logged, not fatal."""
    try:
        sdnotify.notify(*states)
    except OSError as exc:
        log.warning("sd_notify failed", extra={"error": str(exc)})


def config_hash(config: AgentConfig) -> str:
    """sha256 of the validated config (secrets excluded: SecretStr dumps masked)."""
    blob = json.dumps(config.model_dump(mode="json"), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass
class RunResult:
    received: int = 0
    committed: int = 0
    dropped: int = 0
    errors: int = 0
    elapsed_secs: float = 0.0
    connectors: dict[str, str] = field(default_factory=dict)


class Agent:
    def __init__(self, config: AgentConfig, *, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = AgentMetrics()
        self.catalog = SignalCatalog()
        self.started = asyncio.Event()
        self.running: list[RunningConnector] = []
        self.sink_runners: list[SinkRunner] = []
        self.channel: BoundedChannel | None = None
        self.processors: list[AnomalyProcessor] = []
        self.events: deque[dict[str, Any]] = deque(maxlen=200)  # recent anomaly events (status page)
        self.on_batch: list[Any] = []  # taps fed with every flushed batch (status page last values)
        self.last_values: Any = None  # the status page's LastValues tap, set by serve_http
        self.http_port: int | None = None
        self._stop = asyncio.Event()
        self.next_config: AgentConfig | None = None
        self.reload_errors = 0
        self._deadline: float | None = None
        # run-local signal ids are saved for batches that outlive the run (durable buffer only)
        self._durable = config.buffer.kind is BufferKind.sqlite
        self._catalog_path = Path(config.agent.state_dir) / "signals.json"
        self._catalog_file = CatalogFile(self._catalog_path)
        self._saved_catalog_version = -1
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """True when a stop was asked for (signal, ``request_stop``), not just the duration ending."""
        return self._stop.is_set() and self.next_config is None

    def request_reload(self) -> None:
        """SIGHUP: validate the config file again; if it is valid, stop in order (everything
        flushed into the durable buffers and committed) and let the caller start an agent on the
        new config (``next_config``). An invalid file is refused; the running config continues."""
        from edge_agent.config import load_config
        from edge_agent.errors import ConfigError

        if self.config_path is None:
            log.warning("reload requested but the agent was not started from a file")
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused; the running config continues",
                      extra={"config": str(self.config_path), "problems": exc.problems})
            self.reload_errors += 1
            return
        log.info("config reload accepted; restarting the pipeline", extra={"config": str(self.config_path)})
        self.next_config = new
        self._stop.set()

    def health(self) -> dict[str, Any]:
        conns = {rc.name: rc.state for rc in self.running}
        sinks = {sr.sink_id: sr.state for sr in self.sink_runners}
        ok = all(s == "connected" for s in sinks.values()) and all(s in ("connected", "stopped") for s in conns.values())
        return {
            "status": "ok" if ok else "degraded",
            "connectors": conns,
            "sinks": sinks,
            "buffer_rows": {sr.sink_id: sr.buffer.rows for sr in self.sink_runners},
            "received": self.metrics.total_received(),
            "committed": self.metrics.total_committed(),
            "dropped": self.metrics.total_dropped(),
            "errors": self.metrics.total_errors(),
            "uptime_secs": round(time.monotonic() - self._t0, 1),
        }

    # ------------------------------------------------------------------ building
    def _build_sinks(self) -> None:
        cfg = self.config
        chash = config_hash(cfg)
        for scfg in cfg.effective_sinks():
            smetrics = SinkMetrics()
            self.metrics.sinks[scfg.id] = smetrics
            ctx = SinkContext(
                sink_id=scfg.id,
                catalog=self.catalog,
                agent_id=cfg.agent.id,
                data_dir=Path(cfg.agent.data_dir),
                state_dir=Path(cfg.agent.state_dir),
                config_hash=chash,
                metrics=smetrics,
                log=logging.getLogger(f"axedge.sink.{scfg.id}"),
            )
            sink = sink_factory(scfg.type)(scfg, ctx)
            b = cfg.buffer
            path = Path(cfg.agent.state_dir) / "buffers" / f"{scfg.id}.sqlite" if b.kind is BufferKind.sqlite else None
            buf = open_buffer(
                b.kind.value,
                path,
                max_bytes=int(b.max_bytes),
                when_full=b.when_full,
                fsync=b.fsync.value,
                on_drop=lambda rows, reason, _m=smetrics: _m.count_dropped(rows, reason),
            )
            runner = SinkRunner(scfg.id, sink, buf)
            self.metrics.buffers[scfg.id] = lambda _b=buf: (_b.rows, _b.nbytes, _b.read_backs)
            self.sink_runners.append(runner)

    def _build_connectors(self) -> None:
        cfg = self.config
        quarantine = Quarantine(Path(cfg.agent.state_dir) / "quarantine")
        for ccfg in cfg.connectors:
            if not ccfg.enabled:
                continue
            cm = ConnectorMetrics()
            self.metrics.connectors[ccfg.id] = cm
            ctx = ConnectorContext(
                connector_id=ccfg.id,
                catalog=self.catalog,
                send=self._send,
                metrics=cm,
                state_dir=Path(cfg.agent.state_dir) / "connectors" / ccfg.id,
                quarantine_sink=quarantine,
                log=logging.getLogger(f"axedge.connector.{ccfg.id}"),
            )
            units = connector_factory(ccfg.type)(ccfg, ctx)
            for unit in units:
                rc = RunningConnector(
                    unit,
                    on_startup_error=ccfg.on_startup_error,
                    backoff=Backoff(ccfg.backoff_initial_secs, ccfg.backoff_max_secs),
                    on_reconnect=lambda _id=ccfg.id: self.metrics.reconnects.labels(_id).inc(),
                )
                self.metrics.states[unit.name] = lambda _rc=rc: _rc.state
                self.running.append(rc)

    async def _send(self, chunk) -> bool:
        return await self.channel.send(chunk)

    # ------------------------------------------------------------------ core
    async def _core(self) -> None:
        bc = self.config.core.batch
        batcher = Batcher(BatchPolicy(bc.max_rows, int(bc.max_bytes), bc.max_age_secs))
        ch = self.channel
        while True:
            try:
                chunk = await ch.recv(batcher.until_next())
            except ChannelClosed:
                break
            if chunk is not None:
                full = batcher.add(chunk)
                while not full:
                    nxt = ch.recv_nowait()
                    if nxt is None:
                        break
                    full = batcher.add(nxt)
            reason = batcher.due()
            if reason:
                for derived in await self._flush(batcher, reason):
                    batcher.add(derived)
        for derived in await self._flush(batcher, "shutdown"):
            batcher.add(derived)
        for p in self.processors:
            for derived in p.close():
                batcher.add(derived)
        await self._flush(batcher, "shutdown", process=False)

    def _restore_catalog(self) -> None:
        """Buffered batches carry the signal ids of the run that wrote them. When any buffer
        still holds rows, take the saved catalog back first so each key keeps its id."""
        if not self._durable or not any(sr.buffer.rows for sr in self.sink_runners):
            return
        records = load_catalog(self._catalog_path)
        if records is None:
            log.warning("buffered rows but no stored signal catalog; their signals will be unknown/<id>",
                        extra={"path": str(self._catalog_path)})
            return
        try:
            n = self.catalog.preload(records)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("stored signal catalog rejected; buffered rows may be written as unknown/<id>",
                      extra={"path": str(self._catalog_path), "error": str(exc)})
            return
        self._saved_catalog_version = self.catalog.version
        log.info("signal catalog restored for buffered rows", extra={"signals": n})

    def _save_catalog(self) -> None:
        """Before a batch enters a durable buffer, every id it uses must be in the saved catalog."""
        if self._durable and self.catalog.version != self._saved_catalog_version:
            version = self.catalog.version
            try:
                self._catalog_file.save(self.catalog)  # appends what changed since the last save
            except OSError as exc:
                self.metrics.core_errors.labels("catalog_save").inc()
                log.error("cannot save the signal catalog", extra={"path": str(self._catalog_path), "error": str(exc)})
                return
            self._saved_catalog_version = version

    async def _flush(self, batcher: Batcher, reason: str, *, process: bool = True) -> list:
        """Flush the batch into every sink's buffer, run the durability callbacks, feed the
        processors; returns the samples the processors derived (scores, events)."""
        flushed = batcher.flush(reason)
        if flushed is None:
            return []
        batch = flushed.batch
        self.metrics.flushes.labels(flushed.reason).inc()
        self.metrics.batch_rows.inc(batch.num_rows)
        self._save_catalog()
        for sr in self.sink_runners:
            await sr.put(batch, deadline=self._deadline)
        for cb in flushed.callbacks:
            try:
                cb()
            except Exception as exc:  # noqa: BLE001 - an ack callback must not stop the core; counted
                self.metrics.count_dropped("core", "ack_callback_failed", 0)
                log.warning("durability callback failed", extra={"error": repr(exc)})
        for tap in self.on_batch:
            tap(batch)
        derived = []
        if process:
            for p in self.processors:
                derived.extend(p.process(batch))
        return derived

    async def _stop_connectors(self, tasks: list[asyncio.Task]) -> None:
        """Cancel the connector tasks, re-cancelling any that swallow it, within half the
        shutdown deadline; tasks still running then are abandoned (logged), never waited on."""
        limit = time.monotonic() + self.config.agent.shutdown_deadline_secs / 2
        pending = {t for t in tasks if not t.done()}
        while pending and time.monotonic() < limit:
            for t in pending:
                t.cancel()
            _done, pending = await asyncio.wait(pending, timeout=0.5)
        if pending:
            log.error("connector tasks did not stop; abandoned", extra={"tasks": sorted(t.get_name() for t in pending)})
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.error("connector task failed", extra={"task": t.get_name(), "error": repr(t.exception())})

    @staticmethod
    async def _supervise(rc: RunningConnector) -> StartupFailed | None:
        """Run one unit; a startup failure is returned (not raised) so the agent can shut down
        in order, flushing what other connectors delivered, before reporting it."""
        try:
            await rc.run()
        except StartupFailed as exc:
            return exc
        return None

    # ------------------------------------------------------------------ run
    async def _startup(self) -> None:
        cfg = self.config
        try:
            Path(cfg.agent.state_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"cannot create state directory {cfg.agent.state_dir}: {exc.strerror}",
                               hint="create it or point agent.state_dir at a writable path") from exc
        self.channel = BoundedChannel(
            cfg.core.channel_max_chunks,
            cfg.core.channel_max_rows,
            cfg.core.when_full,
            on_drop=lambda rows, reason: self.metrics.count_dropped("channel", reason, rows),
        )
        self._build_sinks()
        self._restore_catalog()
        for sr in self.sink_runners:  # 1. sinks: open datasets, recover, replay
            await sr.open()
        self._build_connectors()
        for pcfg in cfg.processors:
            proc = AnomalyProcessor(pcfg, self.catalog, on_event=self.events.append)
            self.processors.append(proc)
            self.metrics.processors[pcfg.id] = proc.stats
        if cfg.agent.http.enabled:
            from edge_agent.runtime.http import serve_http

            tok = cfg.agent.http.token
            self._http = await serve_http(self, cfg.agent.http.listen_host, cfg.agent.http.listen_port,
                                          token=tok.get_secret_value() if tok is not None else None)
            self.http_port = self._http.sockets[0].getsockname()[1]

    async def _wait_for_stop(self, duration_secs: float | None, conn_tasks: list[asyncio.Task]) -> StartupFailed | None:
        """Until stop is requested, the duration is over, all connectors finished, or one with
        ``on_startup_error: error`` failed to start."""
        stop_wait = asyncio.create_task(self._stop.wait())
        pending: set[asyncio.Task] = {stop_wait, *conn_tasks}
        t_end = None if duration_secs is None else time.monotonic() + duration_secs
        try:
            while True:
                timeout = None if t_end is None else max(0.0, t_end - time.monotonic())
                done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if stop_wait in done or not done:
                    return None
                for t in done:
                    if isinstance(t.result(), StartupFailed):
                        return t.result()
                if pending == {stop_wait}:
                    return None
        finally:
            stop_wait.cancel()

    async def run(self, duration_secs: float | None = None, *, install_signals: bool = False) -> RunResult:
        cfg = self.config
        self._t0 = time.monotonic()
        self._http = None
        tune_malloc()
        loop = asyncio.get_running_loop()
        if install_signals:  # first thing: a SIGTERM during recovery still means an orderly stop
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        failure: StartupFailed | None = None
        try:
            await self._startup()
            self.metrics.up.set(1)
            async with asyncio.TaskGroup() as tg:
                sink_tasks = [tg.create_task(sr.run(lambda: self._deadline), name=f"sink:{sr.sink_id}") for sr in self.sink_runners]
                core_task = tg.create_task(self._core(), name="core")
                # connectors live outside the task group: a protocol library that swallows a
                # cancellation (asyncio.wait_for on Python 3.11) must not hang the shutdown
                conn_tasks = [asyncio.create_task(self._supervise(rc), name=f"connector:{rc.name}") for rc in self.running]
                self.started.set()
                _sd_notify("READY=1", "STATUS=collecting")
                wd_interval = sdnotify.watchdog_interval()
                watchdog = (asyncio.create_task(sdnotify.watchdog_loop(wd_interval, healthy=lambda: not core_task.done()))
                            if wd_interval else None)
                log.info("agent started", extra={"connectors": len(self.running), "sinks": len(self.sink_runners),
                                                 "http_port": self.http_port, "arrow_pool": arrow_pool_name()})
                failure = await self._wait_for_stop(duration_secs, conn_tasks)
                # ---- shutdown in reverse order, inside the deadline
                if self.next_config is None:  # a reload restarts the pipeline: systemd sees RELOADING=1
                    _sd_notify("STOPPING=1")
                if watchdog is not None:
                    watchdog.cancel()
                self._deadline = time.monotonic() + cfg.agent.shutdown_deadline_secs
                log.info("agent stopping", extra={"deadline_secs": cfg.agent.shutdown_deadline_secs})
                await self._stop_connectors(conn_tasks)
                self.channel.close()
                await core_task
                for sr in self.sink_runners:
                    sr.stop()
                await asyncio.gather(*sink_tasks)
        finally:
            for sr in self.sink_runners:
                try:
                    await sr.sink.aclose()
                except AxedgeError as exc:
                    log.error("sink close failed", extra={"sink": sr.sink_id, "error": str(exc)})
                sr.buffer.close()
            if self._http is not None:
                self._http.close()
            self.metrics.up.set(0)
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        if failure is not None:
            raise failure
        return RunResult(
            received=self.metrics.total_received(),
            committed=self.metrics.total_committed(),
            dropped=self.metrics.total_dropped(),
            errors=self.metrics.total_errors(),
            elapsed_secs=time.monotonic() - self._t0,
            connectors={rc.name: rc.state for rc in self.running},
        )
