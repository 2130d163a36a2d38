"""The MQTT connector: subscribe, decode JSON / plain / Sparkplug B, ack only after durability.

Data path::

    paho network thread --on_message--> Inbox (bounded, when_full) --> run() on the asyncio loop:
    route topic -> decode -> column lists -> one SampleChunk per drained batch, with
    on_durable = ack every QoS 1/2 message id it covers (paho manual acks)

A QoS 1/2 message is acknowledged only once the chunk holding it is in the durable buffer, so
the broker keeps (and redelivers) anything the gateway lost. Acks of a previous connection are
never sent on a new one: the broker redelivers those messages on a persistent session.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from connectors.base import Connector, ConnectorContext
from connectors.mqtt.client import Session
from connectors.mqtt.config import JsonOptions, MqttConfig, PayloadFormat, Subscription, ValueKind
from connectors.mqtt.decode import JsonDecoder, PayloadError, decode_plain
from connectors.mqtt.sparkplug import NAMESPACE, Rows, SparkplugHost, rebirth_metrics, rebirth_topic
from connectors.mqtt.sparkplug_codec import encode_payload
from connectors.mqtt.topics import TopicTemplate, clean_level, render
from edge_agent.core.channel import WhenFull
from edge_agent.core.chunk import SampleChunk
from edge_agent.errors import NotConnected
from edge_agent.signals import DataType, DuplicateSignal, SignalSpec

# (topic, payload, mid, qos, receive time ns, dup flag)
Message = tuple[str, bytes, int, int, int, bool]


class Inbox:
    """Bounded hand-over from paho's thread to the asyncio loop. ``block`` makes paho's thread
    wait (it stops reading the socket; the broker holds QoS 1/2 messages); drop policies count
    every dropped message. The loop is woken once per burst, not once per message."""

    def __init__(self, maxlen: int, when_full: WhenFull, loop: asyncio.AbstractEventLoop,
                 on_drop: Callable[[int, str], None]) -> None:
        self.maxlen = maxlen
        self.when_full = when_full
        self._loop = loop
        self._on_drop = on_drop
        self._dq: deque[Message] = deque()
        self._cv = threading.Condition()
        self._event = asyncio.Event()
        self._armed = False
        self._closed = False

    def put(self, item: Message) -> None:
        cv = self._cv
        with cv:
            dq = self._dq
            while len(dq) >= self.maxlen:
                if self._closed:
                    return
                if self.when_full is WhenFull.block:
                    cv.wait(0.5)
                elif self.when_full is WhenFull.drop_newest:
                    self._on_drop(1, "inbox_full")
                    return
                else:
                    dq.popleft()
                    self._on_drop(1, "inbox_full")
            dq.append(item)
            if self._armed:
                return
            self._armed = True
        self.wake()

    def wake(self) -> None:
        """Wake the consumer (from any thread), e.g. on a lost connection."""
        if not self._closed and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._event.set)

    def take(self, max_n: int) -> list[Message]:
        with self._cv:
            dq = self._dq
            if len(dq) <= max_n:
                items = list(dq)
                dq.clear()
            else:
                items = [dq.popleft() for _ in range(max_n)]
            if not dq:
                self._armed = False
                self._event.clear()
            self._cv.notify_all()
        return items

    async def wait(self) -> None:
        await self._event.wait()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


@dataclass(slots=True)
class _Pending:
    """The QoS 1/2 messages of one emitted chunk, until the chunk is durable and acked. After a
    reconnect the broker redelivers unacked messages (DUP flag); a redelivered copy of a message
    that is still in this state is not decoded again: it is acked once the first copy is durable."""

    gen: int  # connection generation the messages arrived on
    acks: list[tuple[int, int]] = field(default_factory=list)  # (mid, qos)
    keys: list[tuple[str, bytes]] = field(default_factory=list)  # (topic, payload)
    durable: bool = False
    waiting: list[tuple[int, int, int]] = field(default_factory=list)  # redelivered copies: (gen, mid, qos)


@dataclass(slots=True)
class Route:
    """How to read one concrete topic (cached per topic)."""

    kind: PayloadFormat
    sub: Subscription | None
    decoder: Callable[[bytes], list] | None
    signal_id: int | None  # the topic's own signal (None for object payloads / Sparkplug)
    asset: str
    name: str
    names: dict[str, int] = field(default_factory=dict)  # member name -> signal id (object payloads)


class MqttConnector(Connector):
    def __init__(self, config: MqttConfig, ctx: ConnectorContext) -> None:
        super().__init__(config, ctx)
        self._templates = [(TopicTemplate.parse(s.topic), s) for s in config.subscriptions]
        self._routes: dict[str, Route | None] = {}
        self._session: Session | None = None
        self._inbox: Inbox | None = None
        self._gen = 0
        self._lost = False
        self._host: dict[int, SparkplugHost] = {}
        self._pending: dict[tuple[str, bytes], _Pending] = {}  # QoS 1/2 messages not yet acked, by content

    # ------------------------------------------------------------------ lifecycle
    @property
    def _client_id(self) -> str:
        return self.config.broker.client_id or f"axedge-{self.config.id}"

    def _topics(self) -> list[tuple[str, int]]:
        cfg = self.config
        out = [(t.filter, s.qos) for t, s in self._templates]
        out += [(s.topic, cfg.signals_qos) for s in cfg.signals]
        return out

    async def connect(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._gen += 1
        self._lost = False
        # keep the previous connection's unacked messages (to recognise their redelivery), drop older ones
        self._pending = {k: v for k, v in self._pending.items() if v.gen == self._gen - 1}
        inbox = Inbox(cfg.inbox_max_messages, cfg.when_full, loop, self.ctx.metrics.count_dropped)
        will = None
        host_id = cfg.sparkplug.host_id
        if host_id:
            will = (f"{NAMESPACE}/STATE/{host_id}", json.dumps({"online": False, "timestamp": int(time.time() * 1000)}).encode(), 1, True)

        def on_message(client, userdata, msg, _put=inbox.put, _now=time.time_ns) -> None:
            _put((msg.topic, msg.payload, msg.mid, msg.qos, _now(), msg.dup))

        def on_lost() -> None:
            self._lost = True
            inbox.wake()

        session = Session(cfg.broker, self._client_id, manual_ack=True, on_message=on_message,
                          on_connection_lost=on_lost, will=will)
        self._session, self._inbox = session, inbox
        self._register_explicit()
        await session.connect()
        await session.subscribe(self._topics())
        if host_id:
            session.client.publish(f"{NAMESPACE}/STATE/{host_id}",
                                   json.dumps({"online": True, "timestamp": int(time.time() * 1000)}), qos=1, retain=True)
        self.ctx.log.info("mqtt connected", extra={"connector": cfg.id, "broker": session.where,
                                                   "session_present": session.session_present, "topics": len(self._topics())})

    async def aclose(self) -> None:
        s, self._session = self._session, None
        if self._inbox is not None:
            self._inbox.close()
        if s is not None:
            if self.config.sparkplug.host_id and s.connected:
                s.client.publish(f"{NAMESPACE}/STATE/{self.config.sparkplug.host_id}",
                                 json.dumps({"online": False, "timestamp": int(time.time() * 1000)}), qos=1, retain=True)
            await asyncio.to_thread(s.close)

    async def probe(self) -> dict[str, object]:
        await self.connect()
        try:
            return {"ok": True, "broker": self._session.where, "session_present": self._session.session_present,
                    "topics": [t for t, _ in self._topics()]}
        finally:
            await self.aclose()

    # ------------------------------------------------------------------ streaming
    async def run(self) -> None:
        inbox, session = self._inbox, self._session
        if inbox is None or session is None:
            raise NotConnected("mqtt connector used before connect()")
        max_n = self.config.batch_max_messages
        linger = self.config.batch_linger_secs
        while True:
            items = inbox.take(max_n)
            if items:
                await self._process(items, session, self._gen)
                continue
            if self._lost:
                raise NotConnected(f"{session.where}: connection lost ({session.disconnect_reason})")
            await inbox.wait()
            if linger:
                await asyncio.sleep(linger)

    def _acker(self, state: _Pending) -> Callable[[], None]:
        def on_durable() -> None:
            state.durable = True
            session, pend = self._session, self._pending
            if session is None or not session.connected:
                return
            if state.gen == self._gen:
                session.ack_many(state.acks)
                for k in state.keys:
                    if pend.get(k) is state:
                        del pend[k]
            # else: acks of a closed connection are never sent; the broker redelivers those messages
            # and _process() recognises them (state stays in _pending until the next reconnect)
            mine = [(mid, qos) for g, mid, qos in state.waiting if g == self._gen]
            if mine:
                session.ack_many(mine)

        return on_durable

    async def _process(self, items: list[Message], session: Session, gen: int) -> None:
        rows = Rows()
        state = _Pending(gen)
        acks, keys, pend = state.acks, state.keys, self._pending
        routes = self._routes
        max_bytes = self.config.max_payload_bytes
        quarantine = self.ctx.quarantine
        for topic, payload, mid, qos, recv, dup in items:
            if qos:
                key = (topic, payload)
                if dup:  # a redelivery: skip it if the first copy is already in the pipeline
                    old = pend.get(key)
                    if old is not None and old.gen != gen:
                        del pend[key]
                        if old.durable:
                            acks.append((mid, qos))
                        else:
                            old.waiting.append((gen, mid, qos))
                        self.ctx.metrics.count_dropped(1, "redelivered_duplicate")
                        continue
                acks.append((mid, qos))
                keys.append(key)
                pend[key] = state
            route = routes.get(topic, False)
            if route is False:
                route = self._route(topic)
            if route is None:
                continue
            if len(payload) > max_bytes:
                quarantine(payload[:max_bytes], "oversize", topic=topic, size=len(payload))
                continue
            rows.now = recv
            if route.kind is PayloadFormat.sparkplug_b:
                self._sparkplug(route, topic, payload, recv, rows, session)
                continue
            try:
                samples = route.decoder(payload)
            except PayloadError as exc:
                quarantine(payload, exc.reason, topic=topic, detail=str(exc))
                continue
            if len(samples) == 1 and samples[0][0] is None and route.signal_id is not None:
                _, ts, val, text, q = samples[0]
                rows.add(route.signal_id, recv if ts is None else ts, val, text, q)
                continue
            for name, ts, val, text, q in samples:
                if name is None:
                    sid = route.signal_id
                else:
                    sid = route.names.get(name)
                    if sid is None:
                        sid = self._member(route, name, text is not None)
                if sid is None:
                    quarantine(payload, "unmapped", topic=topic, detail=f"no signal for member {name!r}")
                    continue
                rows.add(sid, recv if ts is None else ts, val, text, q)
        chunk = self._chunk(rows)
        if acks:
            chunk.on_durable = self._acker(state)
        await self.ctx.emit(chunk)

    @staticmethod
    def _chunk(rows: Rows) -> SampleChunk:
        val = np.array(rows.val, dtype=np.float64)
        valid = ~np.isnan(val) if (rows.has_null or rows.has_text) else None
        return SampleChunk(
            signal_id=np.array(rows.sid, dtype=np.int32),
            source_time_ns=np.array(rows.src, dtype=np.int64),
            receive_time_ns=np.array(rows.recv, dtype=np.int64),
            value=val,
            quality=np.array(rows.qual, dtype=np.uint32),
            valid=valid,
            text=rows.text if rows.has_text else None,
        )

    # ------------------------------------------------------------------ routing
    def _register(self, spec: SignalSpec) -> int | None:
        if len(self.ctx.catalog) >= self.config.max_signals and self.ctx.catalog.by_key(spec.key) is None:
            self.ctx.metrics.count_dropped(1, "max_signals")
            return None
        try:
            return self.ctx.register(spec)
        except DuplicateSignal as exc:
            self.ctx.log.warning("mqtt signal clash", extra={"connector": self.config.id, "error": str(exc)})
            return None

    def _register_explicit(self) -> None:
        cfg = self.config
        for s in cfg.signals:
            sid = self._register(SignalSpec(
                name=s.name, asset=s.asset or cfg.asset, unit=s.unit, address=f"mqtt:{s.topic}", connector=cfg.id,
                semantic_id=s.semantic_id, description=s.description,
            ))
            fmt = PayloadFormat(cfg.signals_format)
            decoder = decode_plain if fmt is PayloadFormat.plain else JsonDecoder(JsonOptions())
            self._routes[s.topic] = Route(fmt, None, decoder, sid, s.asset or cfg.asset, s.name)

    def _route(self, topic: str) -> Route | None:
        """Resolve a topic seen for the first time (then cached). None: not ours / unusable."""
        cfg = self.config
        route: Route | None = None
        for tpl, sub in self._templates:
            vars_ = tpl.match(topic)
            if vars_ is None:
                continue
            if sub.format is PayloadFormat.sparkplug_b:
                route = Route(PayloadFormat.sparkplug_b, sub, None, None, "", "")
                break
            clean = {k: clean_level(v) for k, v in vars_.items()}
            try:
                if sub.asset:
                    asset = render(sub.asset, clean)
                else:
                    extra = [clean[n] for n in tpl.variables if n != "signal"]
                    asset = "/".join([cfg.asset, *extra])
                name = render(sub.signal, clean) if sub.signal else clean.get("signal") or clean_level(topic.rsplit("/", 1)[-1])
            except (KeyError, ValueError, IndexError) as exc:
                self.ctx.quarantine(b"", "unmapped", topic=topic, detail=f"template: {exc}")
                break
            asset = "/".join(p for p in asset.split("/") if p)
            if sub.format is PayloadFormat.plain:
                kind = sub.value

                def decoder(p: bytes, _k: ValueKind = kind) -> list:
                    return decode_plain(p, _k)
            else:
                decoder = JsonDecoder(sub.json_options, sub.value)
            sid = self._register(SignalSpec(
                name=name, asset=asset, unit=sub.units.get(name),
                dtype=DataType.string if sub.value is ValueKind.text else DataType.float64,
                address=f"mqtt:{topic}", connector=cfg.id,
            ))
            route = Route(sub.format, sub, decoder, sid, asset, name)
            break
        if len(self._routes) > 4 * cfg.max_signals:
            self._routes.clear()  # topic flood guard: the cache is rebuilt on demand
        self._routes[topic] = route
        return route

    def _member(self, route: Route, name: str, text: bool) -> int | None:
        """Signal id of a member of an object payload (``{"temp": 1, "rpm": 2}``)."""
        cname = clean_level(name)
        sub = route.sub
        sid = self._register(SignalSpec(
            name=cname, asset=route.asset, unit=sub.units.get(cname) if sub else None,
            dtype=DataType.string if text else DataType.float64,
            address=f"mqtt:{route.name}#{name}", connector=self.config.id,
        ))
        if sid is not None:
            route.names[name] = sid
        return sid

    # ------------------------------------------------------------------ Sparkplug B
    def _sparkplug(self, route: Route, topic: str, payload: bytes, recv: int, rows: Rows, session: Session) -> None:
        sub = route.sub
        host = self._host.get(id(sub))
        if host is None:
            sp = self.config.sparkplug
            host = self._host[id(sub)] = SparkplugHost(
                self.config.id, self._register_or_raise, base_asset=self.config.asset, asset_template=sub.asset,
                units=sub.units, request_rebirth=sp.rebirth == "request", rebirth_min_interval_secs=sp.rebirth_min_interval_secs,
                clock=self.ctx.clock,
            )
        try:
            res = host.handle(topic, payload, recv, rows)
        except _Unregistered:
            self.ctx.quarantine(payload, "max_signals", topic=topic)
            return
        for p in res.problems:
            if p.quarantine:
                self.ctx.quarantine(payload, p.reason, topic=topic, detail=p.detail)
            else:
                self.ctx.metrics.count_error(p.reason)
        if res.skipped_metrics:
            self.ctx.metrics.count_dropped(res.skipped_metrics, "sparkplug_unsupported_type")
        if res.rebirth is not None:
            group, node = res.rebirth
            session.client.publish(rebirth_topic(group, node), encode_payload(int(time.time() * 1000), None, rebirth_metrics()), qos=0)
            self.ctx.metrics.count_event("rebirth_requested")
            self.ctx.log.info("sparkplug rebirth requested", extra={"connector": self.config.id, "group": group, "node": node,
                                                                    "reasons": ",".join(p.reason for p in res.problems)})

    def _register_or_raise(self, spec: SignalSpec) -> int:
        sid = self._register(spec)
        if sid is None:
            raise _Unregistered(spec.key)
        return sid


class _Unregistered(Exception):
    """A Sparkplug metric could not become a signal (signal cap or clash)."""


def build(config: MqttConfig, ctx: ConnectorContext) -> list[Connector]:
    return [MqttConnector(config, ctx)]
