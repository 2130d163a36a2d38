"""OPC UA connector units: ``opcua_subscription`` (monitored items) and ``opcua_polling`` (Read).

Every ``connect()`` builds a fresh session: endpoint and trust check, identity, then namespace
URIs -> indices and browse paths -> NodeIds are resolved again, and metadata (DataType,
EngineeringUnits, EURange) is read and registered. A server restart therefore never leaves
nodes at BadNodeIdUnknown: the unit raises a transient error, the runtime's capped, jittered
backoff calls ``connect()`` again, and everything is rebuilt (asyncua's own auto-reconnect is
off so that exactly one component decides when to open sessions).

Values travel as arrays: one chunk per publish response (subscription) or per Read (polling).
The StatusCode of each value is its ``quality``; SourceTimestamp is the source time (receive
time when the server sends none) and ServerTimestamp the ``server_time_ns``. A bad node yields
a row with its bad status, never a dropped batch. Nothing is ever written to the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from asyncua import Client, ua

from connectors.base import Connector, ConnectorContext
from connectors.opcua.config import (
    DeadbandType,
    NumericNamespace,
    OpcUaConfigBase,
    OpcUaNodeConfig,
    OpcUaPollingConfig,
    OpcUaSubscriptionConfig,
)
from connectors.opcua.nodes import NodeMeta, convert, format_node_id, read_attribute, read_metadata, resolve_nodes, to_ns
from connectors.opcua.security import configure, translate
from edge_agent.core.chunk import SampleChunk
from edge_agent.errors import NotConnected, ProtocolError
from edge_agent.signals import DataType, SignalSpec

BAD_NODE_ID_UNKNOWN = ua.StatusCodes.BadNodeIdUnknown
_MAX_NODES_PER_READ = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead


def decode_values(
    dvs: Sequence[ua.DataValue], receive_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str | None] | None]:
    """DataValues -> ``(value, valid, quality, source_ns, server_ns, text)`` arrays.
    ``text`` is None when every value is numeric."""
    n = len(dvs)
    vals = [0.0] * n
    valid = [True] * n
    qual = [0] * n
    src = [0] * n
    srv = [0] * n
    text: list[str | None] | None = None
    for k, dv in enumerate(dvs):
        var = dv.Value
        v = var.Value if var is not None else None
        t = type(v)
        if t is float or t is int or t is bool:
            vals[k] = v
        else:
            f, s, ok = convert(v)
            vals[k] = f
            valid[k] = ok and s is None
            if s is not None:
                if text is None:
                    text = [None] * n
                text[k] = s
        sc = dv.StatusCode
        if sc is not None:
            qual[k] = sc.value
            if sc.value & 0x80000000 and v is None:
                valid[k] = False
        ts = dv.SourceTimestamp
        src[k] = to_ns(ts) if ts is not None else 0
        ts = dv.ServerTimestamp
        srv[k] = to_ns(ts) if ts is not None else 0
    src_a = np.asarray(src, dtype=np.int64)
    srv_a = np.asarray(srv, dtype=np.int64)
    src_a = np.where(src_a == 0, np.where(srv_a == 0, receive_ns, srv_a), src_a)
    return (
        np.asarray(vals, dtype=np.float64),
        np.asarray(valid, dtype=bool),
        np.asarray(qual, dtype=np.uint32),
        src_a,
        srv_a,
        text,
    )


class _OpcUaUnit(Connector):
    """Shared session handling of both connector types."""

    config: OpcUaConfigBase

    def __init__(self, config: OpcUaConfigBase, ctx: ConnectorContext) -> None:
        super().__init__(config, ctx)
        self._client: Client | None = None
        self._lost: asyncio.Event | None = None
        self._lost_reason = ""
        self._sid = np.zeros(0, dtype=np.int32)
        self._node_ids: list[ua.NodeId | None] = []
        self._meta: list[NodeMeta | None] = []
        self.namespaces: list[str] = []

    async def _req(self, aw, what: str) -> Any:
        return await translate(aw, self.config.endpoint, self.config.request_timeout_secs, what)

    async def connect(self) -> None:
        """New session; resolve nodes by namespace URI and browse path; read metadata; register signals."""
        await self.aclose()
        cfg = self.config
        # keep-alive probe (a Read of ServerState) every request_timeout_secs, failing after as long
        client = Client(cfg.endpoint, timeout=cfg.request_timeout_secs, watchdog_intervall=cfg.request_timeout_secs)
        self._lost = asyncio.Event()
        self._lost_reason = ""
        await configure(client, cfg, self.ctx.state_dir)

        async def on_lost(exc: Exception) -> None:
            self._mark_lost(f"connection lost: {exc!r}")

        client.connection_lost_callback = on_lost
        await self._req(client.connect(auto_reconnect=False), "connect")
        self._client = client
        session = client.uaclient
        resolved = await self._req(
            resolve_nodes(session, cfg.nodes, cfg.namespaces, cfg.numeric_namespace is NumericNamespace.allow), "resolve nodes"
        )
        if resolved.problems:  # one line per session, not one per node
            self.ctx.log.warning("opcua nodes not resolved", extra={
                "connector": self.name, "count": len(resolved.problems), "first": resolved.problems[:3]})
        self._node_ids = resolved.node_ids
        self.namespaces = resolved.namespaces
        found = [i for i, nid in enumerate(self._node_ids) if nid is not None]
        metas = await self._req(read_metadata(session, [self._node_ids[i] for i in found]), "read metadata") if found else []
        self._meta = [None] * len(cfg.nodes)
        for i, m in zip(found, metas, strict=True):
            self._meta[i] = m
        self._sid = np.asarray([self._register(n, self._meta[i], self._node_ids[i]) for i, n in enumerate(cfg.nodes)], dtype=np.int32)

    def _register(self, n: OpcUaNodeConfig, meta: NodeMeta | None, nid: ua.NodeId | None) -> int:
        cfg = self.config
        extra: dict[str, Any] = {}
        if meta is not None:
            extra["opcua_type"] = meta.opcua_type
            if meta.eu_range is not None:
                extra["eu_range"] = list(meta.eu_range)
            if meta.eu is not None:
                extra["eu"] = meta.eu
        if nid is not None:
            extra["node_id"] = format_node_id(nid, self.namespaces)
        dtype = n.dtype or (meta.dtype if meta is not None else DataType.float64)
        return self.ctx.register(
            SignalSpec(
                name=n.name,
                asset=n.asset or cfg.asset,
                dtype=dtype,
                unit=n.unit or (meta.unit if meta is not None else None),
                address=n.node_id or n.browse_path or "",
                connector=cfg.id,
                semantic_id=n.semantic_id,
                description=n.description,
                extra=extra,
            ),
            replace=True,
        )

    def _mark_lost(self, reason: str) -> None:
        if self._lost is not None and not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    def _missing(self) -> np.ndarray:
        return np.asarray([self._sid[i] for i, nid in enumerate(self._node_ids) if nid is None], dtype=np.int32)

    async def _emit_decoded(self, sid: np.ndarray, dvs: Sequence[ua.DataValue]) -> None:
        recv = time.time_ns()
        vals, valid, qual, src, srv, text = decode_values(dvs, recv)
        n = sid.shape[0]
        await self.ctx.emit(
            SampleChunk(
                signal_id=sid,
                source_time_ns=src,
                receive_time_ns=np.full(n, recv, dtype=np.int64),
                value=vals,
                quality=qual,
                valid=None if valid.all() else valid,
                text=text,
                server_time_ns=srv,
            )
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), 3.0)
        except (OSError, ConnectionError, TimeoutError, asyncio.TimeoutError, ua.UaError) as exc:
            # the session is gone anyway (server restarted / socket dead); closing it is best effort
            self.ctx.log.debug("opcua disconnect failed", extra={"connector": self.name, "error": repr(exc)})


class OpcUaSubscriptionConnector(_OpcUaUnit):
    """Monitored items in one subscription; one chunk per publish response."""

    config: OpcUaSubscriptionConfig

    def __init__(self, config: OpcUaSubscriptionConfig, ctx: ConnectorContext) -> None:
        super().__init__(config, ctx)
        self._last_publish = 0.0
        self._emitting = False
        self._silence_secs = 0.0

    async def connect(self) -> None:
        await super().connect()
        cfg = self.config
        assert self._client is not None
        session = self._client.uaclient
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = cfg.publishing_interval_ms
        params.RequestedMaxKeepAliveCount = cfg.keepalive_count
        params.RequestedLifetimeCount = cfg.keepalive_count * 3
        params.MaxNotificationsPerPublish = 10_000
        params.PublishingEnabled = True
        params.Priority = 0
        res = await self._req(session.create_subscription(params, callback=self._on_publish), "create subscription")
        self._sub_id = res.SubscriptionId
        keepalive = res.RevisedPublishingInterval / 1000 * res.RevisedMaxKeepAliveCount
        self._silence_secs = cfg.silence_timeout_secs or 3 * keepalive + 5
        self._last_publish = time.monotonic()
        failed_sid: list[int] = []
        failed_q: list[int] = []
        handles = [i for i, nid in enumerate(self._node_ids) if nid is not None]
        for start in range(0, len(handles), cfg.max_items_per_request):
            part = handles[start : start + cfg.max_items_per_request]
            req = ua.CreateMonitoredItemsParameters()
            req.SubscriptionId = self._sub_id
            req.TimestampsToReturn = ua.TimestampsToReturn.Both
            req.ItemsToCreate = [self._item_request(i) for i in part]
            results = await self._req(session.create_monitored_items(req), "create monitored items")
            for i, r in zip(part, results, strict=True):
                if not r.StatusCode.is_good():
                    failed_sid.append(int(self._sid[i]))
                    failed_q.append(r.StatusCode.value)
        if failed_sid:
            self.ctx.log.warning("opcua monitored items rejected", extra={
                "connector": self.name, "count": len(failed_sid), "first_status": ua.StatusCode(failed_q[0]).name})
        missing = self._missing()
        if missing.size:
            await self.ctx.emit_gap(missing, BAD_NODE_ID_UNKNOWN)
        if failed_sid:  # gap rows carrying each item's own bad status
            gap = SampleChunk.gap(failed_sid, 0)
            gap.quality = np.asarray(failed_q, dtype=np.uint32)
            self.ctx.metrics.count_gap(len(gap))
            await self.ctx.send(gap)

    def _item_request(self, i: int) -> ua.MonitoredItemCreateRequest:
        cfg = self.config
        n = cfg.nodes[i]
        rv = ua.ReadValueId()
        rv.NodeId = self._node_ids[i]
        rv.AttributeId = ua.AttributeIds.Value
        mp = ua.MonitoringParameters()
        mp.ClientHandle = i
        mp.SamplingInterval = n.sampling_interval_ms if n.sampling_interval_ms is not None else cfg.sampling_interval_ms
        mp.QueueSize = cfg.queue_size
        mp.DiscardOldest = True
        db_type = n.deadband_type or cfg.deadband_type
        db_value = n.deadband_value if n.deadband_value is not None else cfg.deadband_value
        meta = self._meta[i]
        numeric = meta is None or not (meta.dtype.is_text or meta.dtype is DataType.bool)
        if db_type is not DeadbandType.none and numeric:
            f = ua.DataChangeFilter()
            f.Trigger = ua.DataChangeTrigger.StatusValue
            f.DeadbandType = 1 if db_type is DeadbandType.absolute else 2
            f.DeadbandValue = db_value
            mp.Filter = f
        req = ua.MonitoredItemCreateRequest()
        req.ItemToMonitor = rv
        req.MonitoringMode = ua.MonitoringMode.Reporting
        req.RequestedParameters = mp
        return req

    async def _on_publish(self, result: ua.PublishResult) -> None:
        """Publish loop callback: one chunk per DataChangeNotification."""
        self._last_publish = time.monotonic()
        for notif in result.NotificationMessage.NotificationData or ():
            if isinstance(notif, ua.DataChangeNotification):
                items = notif.MonitoredItems
                if not items:
                    continue
                handles = np.fromiter((it.ClientHandle for it in items), dtype=np.int64, count=len(items))
                self._emitting = True
                try:
                    await self._emit_decoded(self._sid[handles], [it.Value for it in items])
                finally:
                    self._emitting = False
                    self._last_publish = time.monotonic()
            elif isinstance(notif, ua.StatusChangeNotification) and not notif.Status.is_good():
                self._mark_lost(f"subscription status {notif.Status.name}")

    async def run(self) -> None:
        """Watch the session: a lost connection or a silent subscription raises NotConnected."""
        assert self._lost is not None
        check = min(1.0, self._silence_secs / 4)
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), check)
            except (TimeoutError, asyncio.TimeoutError):
                pass
            if self._lost.is_set():
                raise NotConnected(f"{self.config.endpoint}: {self._lost_reason}")
            silent = time.monotonic() - self._last_publish
            if not self._emitting and silent > self._silence_secs:
                self.ctx.metrics.count_error("silent_subscription")
                raise NotConnected(
                    f"{self.config.endpoint}: no publish response for {silent:.1f} s (connected but silent); recreating the session"
                )


class OpcUaPollingConnector(_OpcUaUnit):
    """Batched Read of every node, chunked to the server's MaxNodesPerRead."""

    config: OpcUaPollingConfig

    def __init__(self, config: OpcUaPollingConfig, ctx: ConnectorContext) -> None:
        super().__init__(config, ctx)
        self.poll_interval_secs = config.poll_interval_secs
        self._reads: list[tuple[np.ndarray, ua.ReadParameters]] = []

    async def connect(self) -> None:
        await super().connect()
        assert self._client is not None
        limit = self.config.max_nodes_per_read
        if not limit:
            dv = (await self._req(read_attribute(self._client.uaclient, [ua.NodeId(_MAX_NODES_PER_READ)], ua.AttributeIds.Value), "read limits"))[0]
            server_max = dv.Value.Value if dv.StatusCode.is_good() and dv.Value is not None else 0
            limit = int(server_max) if server_max else 1000
        self.max_nodes_per_read = limit
        idx = [i for i, nid in enumerate(self._node_ids) if nid is not None]
        self._reads = []
        for start in range(0, len(idx), limit):
            part = idx[start : start + limit]
            params = ua.ReadParameters()
            params.MaxAge = 0
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            for i in part:
                rv = ua.ReadValueId()
                rv.NodeId = self._node_ids[i]
                rv.AttributeId = ua.AttributeIds.Value
                params.NodesToRead.append(rv)
            self._reads.append((self._sid[np.asarray(part, dtype=np.int64)], params))
        self._gaps = self._missing()

    async def poll(self) -> None:
        if self._client is None:
            raise NotConnected(f"{self.config.endpoint}: not connected")
        if self._lost is not None and self._lost.is_set():
            raise NotConnected(f"{self.config.endpoint}: {self._lost_reason}")
        session = self._client.uaclient
        for sid, params in self._reads:
            dvs = await self._req(session.read(params), "read")
            if len(dvs) != sid.shape[0]:
                raise ProtocolError(f"{self.config.endpoint}: Read returned {len(dvs)} results for {sid.shape[0]} nodes")
            await self._emit_decoded(sid, dvs)
        if self._gaps.size:
            await self.ctx.emit_gap(self._gaps, BAD_NODE_ID_UNKNOWN)


def build_subscription(config: OpcUaSubscriptionConfig, ctx: ConnectorContext) -> list[Connector]:
    return [OpcUaSubscriptionConnector(config, ctx)]


def build_polling(config: OpcUaPollingConfig, ctx: ConnectorContext) -> list[Connector]:
    return [OpcUaPollingConnector(config, ctx)]


__all__ = ["OpcUaPollingConnector", "OpcUaSubscriptionConnector", "build_polling", "build_subscription"]
