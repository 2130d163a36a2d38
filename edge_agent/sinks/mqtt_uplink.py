"""MQTT uplink sink: the gateway's data to a central broker, as unified-namespace JSON topics
and/or as a Sparkplug B edge node, with store-and-forward delivery.

Delivery: ``write()`` publishes every row (QoS 1 or 2); ``commit()`` waits until the broker
acknowledged every publish since the last commit. If the broker is away, refuses a publish or
does not acknowledge in time, ``commit()`` raises and the runtime rejects the transaction: the
rows stay in the durable buffer and are sent again, oldest first, with their original
timestamps. Delivery is at-least-once: a publish whose PUBACK was lost is sent again.

Sparkplug B: NBIRTH (every catalog signal as a metric, alias = signal id, plus ``bdSeq`` and
``Node Control/Rebirth``), NDATA by alias with a ``seq`` 0..255, NDEATH as the MQTT will with the
same ``bdSeq`` (kept in ``state_dir`` and incremented per connection), a new NBIRTH when the
catalog grows or when an NCMD ``Node Control/Rebirth`` arrives.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from connectors.mqtt.config import BrokerConfig
from dataset_builder.format import numpy_filled, numpy_valid, numpy_values
from edge_agent.config.base import ComponentId, StrictModel
from edge_agent.errors import NotConnected, SecurityError, SinkError, SinkUnavailable
from edge_agent.sinks.base import Sink, SinkContext


class UnsOptions(StrictModel):
    topic: str = Field("{asset}/{signal}", description="Topic template; {asset} is the full asset path (site/area/line/...), "
                       "{signal} the signal name; {site} {area} {line} {cell} are the asset levels")
    include_unit: bool = Field(True, description="Put the unit in every JSON message")
    retain: bool = Field(False, description="Publish with the retain flag (last value for late subscribers)")


class SparkplugUplinkOptions(StrictModel):
    group_id: str = Field("axedge", pattern=r"^[^/+#]+$", description="Sparkplug group id")
    edge_node_id: str | None = Field(None, pattern=r"^[^/+#]+$", description="Edge node id; default the agent id")
    max_metrics_per_message: int = Field(500, ge=1, le=100_000, description="Split NDATA messages above this many metrics")


class MqttUplinkConfig(StrictModel):
    """Publish normalised data northbound: UNS JSON topics and/or a Sparkplug B edge node."""

    id: ComponentId = Field("uplink", description="Sink id")
    type: Literal["mqtt_uplink"]
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="Central broker connection")
    qos: Literal[1, 2] = Field(1, description="Publish QoS (acknowledged delivery)")
    uns: UnsOptions | None = Field(default_factory=UnsOptions, description="Unified-namespace JSON topics; null to disable")
    sparkplug: SparkplugUplinkOptions | None = Field(None, description="Sparkplug B edge node; null to disable")
    ack_timeout_secs: float = Field(30.0, gt=0, le=3600, description="commit() fails if the broker has not acknowledged by then")
    max_outstanding_publishes: int = Field(
        10_000, ge=10, le=50_000,
        description="Publishes awaiting PUBACK before write() waits (MQTT packet ids are 16-bit: far more in flight would collide)")


_LEVELS = ("site", "area", "line", "cell", "asset_name")


class MqttUplinkSink(Sink):
    def __init__(self, config: MqttUplinkConfig, ctx: SinkContext) -> None:
        super().__init__(config, ctx)
        self._session = None
        self._infos: list = []  # MQTTMessageInfo of every publish since the last commit
        self._confirmed = 0  # self._infos[:_confirmed] are acknowledged
        self._refused: list[str] = []
        self._lock = threading.Lock()  # Sparkplug seq / birth state (paho thread answers NCMD)
        self._topics: dict[int, tuple[str, str | None]] = {}  # signal id -> (UNS topic, unit)
        self._born: set[int] = set()
        self._seq = 0
        self._bdseq = -1
        sp = config.sparkplug
        node = (sp.edge_node_id or ctx.agent_id) if sp else ""
        self._sp_base = f"spBv1.0/{sp.group_id}" if sp else ""
        self._sp_node = node
        self._pending_rows = 0

    # ------------------------------------------------------------------ connection
    def _bdseq_file(self) -> Path:
        return Path(self.ctx.state_dir) / "mqtt_uplink" / f"{self.ctx.sink_id}.bdseq"

    def _next_bdseq(self) -> int:
        p = self._bdseq_file()
        try:
            last = int(p.read_text().strip())
        except (OSError, ValueError):
            last = -1
        nxt = (last + 1) % 256
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(str(nxt))
        tmp.replace(p)
        return nxt

    async def open(self) -> dict[str, int]:
        return {}  # connect lazily: a broker that is away must not stop the agent (store-and-forward)

    async def _ensure_connected(self) -> None:
        s = self._session
        if s is not None and s.connected:
            return
        if s is not None:
            raise SinkUnavailable(f"uplink {s.where}: connection lost ({s.disconnect_reason})")
        from connectors.mqtt.client import Session
        from connectors.mqtt.sparkplug_codec import Metric, SpDataType, encode_payload

        cfg = self.config
        will = None
        if cfg.sparkplug is not None:
            self._bdseq = await asyncio.to_thread(self._next_bdseq)
            death = encode_payload(int(time.time() * 1000), None, [Metric(name="bdSeq", datatype=SpDataType.Int64, value=self._bdseq)])
            will = (f"{self._sp_base}/NDEATH/{self._sp_node}", death, 1, False)
        session = Session(cfg.broker, cfg.broker.client_id or f"axedge-{self.ctx.agent_id}-{self.ctx.sink_id}",
                          on_message=self._on_ncmd, will=will)
        session.client.on_publish = self._on_publish
        try:
            await session.connect()
        except SecurityError as exc:  # the shared session speaks the connector tree; the sink has its own
            raise SinkError(f"uplink: {exc.message}", hint=exc.hint) from exc
        except NotConnected as exc:
            raise SinkUnavailable(f"uplink: {exc.message}", hint=exc.hint) from exc
        self._session = session
        self._born.clear()
        if cfg.sparkplug is not None:
            try:
                await session.subscribe([(f"{self._sp_base}/NCMD/{self._sp_node}", 1)])
            except (NotConnected, SecurityError) as exc:
                await asyncio.to_thread(session.close)
                self._session = None
                raise SinkUnavailable(f"uplink: cannot receive rebirth commands: {exc.message}", hint=exc.hint) from exc
            self._birth()
        self.ctx.log.info("uplink connected", extra={"sink": self.ctx.sink_id, "broker": session.where})

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused.append(f"mid {mid}: {reason_code}")

    def _on_ncmd(self, client, userdata, msg) -> None:
        from connectors.mqtt.sparkplug_codec import SparkplugError, decode_payload

        try:
            p = decode_payload(msg.payload)
        except SparkplugError:
            self.ctx.metrics.count_error("bad_ncmd")
            return
        if any(m.name == "Node Control/Rebirth" and m.value for m in p.metrics):
            self._birth()

    # ------------------------------------------------------------------ Sparkplug
    def _birth(self) -> None:
        """Publish NBIRTH with every known signal (seq restarts at 0). Thread-safe."""
        from connectors.mqtt.sparkplug_codec import Metric, SpDataType, encode_payload

        s = self._session
        if s is None or self.config.sparkplug is None:
            return
        with self._lock:
            now = int(time.time() * 1000)
            metrics = [Metric(name="bdSeq", datatype=SpDataType.Int64, value=self._bdseq),
                       Metric(name="Node Control/Rebirth", datatype=SpDataType.Boolean, value=False)]
            born = set()
            for sig in self.ctx.catalog.snapshot():
                text = sig.spec.dtype.is_text
                metrics.append(Metric(name=sig.key, alias=sig.id, timestamp=now,
                                      datatype=SpDataType.String if text else SpDataType.Double, is_null=True))
                born.add(sig.id)
            self._seq = 0
            info = s.client.publish(f"{self._sp_base}/NBIRTH/{self._sp_node}", encode_payload(now, 0, metrics), qos=self.config.qos)
            self._infos.append(info)
            self._born = born

    def _ndata(self, ids, ts_ms, vals, texts, valid) -> None:
        from connectors.mqtt.sparkplug_codec import Metric, SpDataType, encode_payload

        if any(i not in self._born for i in set(ids)):
            self._birth()
        s = self._session
        step = self.config.sparkplug.max_metrics_per_message
        topic = f"{self._sp_base}/NDATA/{self._sp_node}"
        for a in range(0, len(ids), step):
            metrics = []
            for j in range(a, min(a + step, len(ids))):
                text = texts[j]
                if text is not None:
                    metrics.append(Metric(alias=ids[j], timestamp=ts_ms[j], datatype=SpDataType.String, value=text))
                else:
                    metrics.append(Metric(alias=ids[j], timestamp=ts_ms[j], datatype=SpDataType.Double,
                                          value=vals[j], is_null=not valid[j]))
            with self._lock:
                self._seq = (self._seq + 1) % 256
                payload = encode_payload(int(time.time() * 1000), self._seq, metrics)
                self._infos.append(s.client.publish(topic, payload, qos=self.config.qos))

    # ------------------------------------------------------------------ UNS
    def _uns_meta(self, sid: int) -> tuple[str, str | None]:
        meta = self._topics.get(sid)
        if meta is None:
            sig = self.ctx.catalog.get(sid)
            levels = sig.spec.asset.split("/")
            names = dict(zip(_LEVELS, levels, strict=False))
            try:
                topic = self.config.uns.topic.format(asset=sig.spec.asset, signal=sig.spec.name, **names)
            except (KeyError, IndexError):
                topic = f"{sig.spec.asset}/{sig.spec.name}"
            meta = (topic, sig.spec.unit if self.config.uns.include_unit else None)
            self._topics[sid] = meta
        return meta

    # ------------------------------------------------------------------ sink contract
    async def write(self, buffer_id: str, seq: int, batch: pa.RecordBatch) -> None:
        await self._ensure_connected()
        if self._refused:
            raise SinkError(f"uplink {self._session.where}: broker refused publishes ({'; '.join(self._refused[:3])})",
                            hint="the broker's ACL does not allow this client to publish there")
        n = batch.num_rows
        if n == 0:
            return
        cols = row_columns(batch)
        for a in range(0, n, 1000):  # publishing costs ~0.1 ms per row: keep it off the event loop
            await asyncio.to_thread(self._publish_rows, cols, a, min(n, a + 1000))
        self._pending_rows += n
        if not self._session.connected:
            raise SinkUnavailable(f"uplink {self._session.where}: connection lost while publishing")

    def _publish_rows(self, cols: tuple, a: int, b: int) -> None:
        """Publish rows ``a:b`` (worker thread; paho's publish is thread-safe), then wait while too
        many publishes are unacknowledged."""
        ids, ts_ms, vals, texts, valid, quals = cols
        cfg = self.config
        if cfg.uns is not None:
            self._uns(ids, ts_ms, vals, texts, valid, quals, a, b)
        if cfg.sparkplug is not None:
            self._ndata(ids[a:b], ts_ms[a:b], vals[a:b], texts[a:b], valid[a:b])
        if len(self._infos) - self._confirmed > cfg.max_outstanding_publishes:
            self._wait_acks(len(self._infos) - cfg.max_outstanding_publishes // 2)

    def _uns(self, ids, ts_ms, vals, texts, valid, quals, a: int, b: int) -> None:
        client = self._session.client
        qos, retain = self.config.qos, self.config.uns.retain
        infos = self._infos
        dumps = json.dumps
        for i in range(a, b):
            topic, unit = self._uns_meta(ids[i])
            v = vals[i]
            msg = {"timestamp": ts_ms[i], "value": v if valid[i] and v == v and abs(v) != math.inf else None, "quality": quals[i]}
            if texts[i] is not None:
                msg["value"] = texts[i]
            if unit:
                msg["unit"] = unit
            infos.append(client.publish(topic, dumps(msg), qos=qos, retain=retain))

    def commit_due(self) -> bool:
        return bool(self._infos)

    def _wait_acks(self, upto: int | None = None) -> None:
        """Block until the publishes ``self._infos[_confirmed:upto]`` are acknowledged (worker thread)."""
        infos = self._infos
        end = len(infos) if upto is None else upto
        deadline = time.monotonic() + self.config.ack_timeout_secs
        for k in range(self._confirmed, end):
            info = infos[k]
            try:
                while not info.is_published():
                    info.wait_for_publish(0.1)
                    if info.is_published():
                        break
                    s = self._session
                    if s is None or not s.connected:
                        raise SinkUnavailable(f"uplink: broker connection lost with {end - k} publishes unacknowledged")
                    if time.monotonic() > deadline:
                        raise SinkUnavailable(f"uplink {s.where}: {end - k} publishes not acknowledged within "
                                              f"{self.config.ack_timeout_secs}s")
            except (RuntimeError, ValueError) as exc:  # paho: the publish was never queued (not connected)
                raise SinkUnavailable(f"uplink: publish failed: {exc}") from exc
            self._confirmed = k + 1

    async def commit(self) -> None:
        if not self._infos:
            return
        await asyncio.to_thread(self._wait_acks)
        self._infos, self._confirmed = [], 0
        if self._refused:
            raise SinkError(f"uplink {self._session.where}: broker refused publishes ({'; '.join(self._refused[:3])})",
                            hint="the broker's ACL does not allow this client to publish there")
        self.ctx.metrics.count_committed(self._pending_rows)
        self._pending_rows = 0

    async def abort(self) -> None:
        """Drop the session: unacknowledged publishes are sent again from the buffer."""
        self._infos, self._confirmed = [], 0
        self._refused = []
        self._pending_rows = 0
        s, self._session = self._session, None
        if s is not None:
            await asyncio.to_thread(s.close)

    async def aclose(self) -> None:
        s, self._session = self._session, None
        if s is not None:
            if self.config.sparkplug is not None and s.connected:
                from connectors.mqtt.sparkplug_codec import Metric, SpDataType, encode_payload

                death = encode_payload(int(time.time() * 1000), None, [Metric(name="bdSeq", datatype=SpDataType.Int64, value=self._bdseq)])
                s.client.publish(f"{self._sp_base}/NDEATH/{self._sp_node}", death, qos=1).wait_for_publish(2)
            await asyncio.to_thread(s.close)


def build(config: MqttUplinkConfig, ctx: SinkContext) -> Sink:
    return MqttUplinkSink(config, ctx)


def row_columns(batch: pa.RecordBatch) -> tuple[list, list, list, list, list, list]:
    """Per-row Python lists of a sample batch: signal ids, source time (ms), values (NaN when
    null), texts, value validity, quality. Without ``to_numpy`` (it would import pandas)."""
    value_col = batch.column("value")
    valid = numpy_valid(value_col)
    return (
        numpy_values(batch.column("signal_id"), np.int32).tolist(),
        (numpy_values(batch.column("source_time"), np.int64) // 1_000_000).tolist(),
        numpy_filled(value_col, np.float64, math.nan).tolist(),
        batch.column("value_text").to_pylist(),
        [True] * batch.num_rows if valid is None else valid.tolist(),
        numpy_values(batch.column("quality"), np.uint32).tolist(),
    )
