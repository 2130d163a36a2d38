"""Modbus connector: one supervised unit per device, each poll group on its own schedule.

Per poll cycle a unit reads its planned blocks one after the other (a device answers one
request at a time), or, with the device quirk ``max_concurrent_requests: N`` (Modbus TCP
only), over N connections at once, each carrying one request at a time. Every block is decoded
with numpy straight into the cycle's arrays, and the cycle emits **one** chunk of good values
plus, when something failed, one chunk of gap rows. Failures are kept apart:

* an exception response (e.g. illegal data address) marks only that block's signals bad
  (``BAD_OUT_OF_RANGE`` for illegal address, ``BAD_COMMUNICATION_ERROR`` otherwise), names
  device, unit, table and address range in the log, and polling goes on;
* a timeout marks the block ``BAD_TIMEOUT``; when every block of a cycle timed out the device is
  considered gone and :class:`~edge_agent.errors.ConnectorTimeout` goes to the runtime;
* a lost connection marks the rest of the cycle ``BAD_NOT_CONNECTED`` and raises
  :class:`~edge_agent.errors.NotConnected`: the runtime reconnects with backoff.

Source time is the gateway time when the response arrived (Modbus carries no timestamps).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from connectors.base import Connector, ConnectorContext, ticker
from connectors.modbus.config import ConnectionMode, ModbusConfig, ModbusDevice, ModbusSignal, ModbusType, Table
from connectors.modbus.decode import BlockDecoder, FieldSpec
from connectors.modbus.plan import ReadBlock, ReadItem, plan_blocks
from connectors.modbus.transport import ModbusExceptionResponse, ModbusLink, describe
from dataset_builder.format import Quality
from edge_agent.core.chunk import SampleChunk
from edge_agent.errors import ConnectorTimeout, NotConnected, ProtocolError
from edge_agent.signals import DataType, SignalSpec

_DTYPES = {
    ModbusType.bool: DataType.bool,
    ModbusType.bit: DataType.bool,
    ModbusType.int16: DataType.int16,
    ModbusType.uint16: DataType.uint16,
    ModbusType.int32: DataType.int32,
    ModbusType.uint32: DataType.uint32,
    ModbusType.int64: DataType.int64,
    ModbusType.uint64: DataType.uint64,
    ModbusType.float32: DataType.float32,
    ModbusType.float64: DataType.float64,
    ModbusType.bcd: DataType.uint32,
    ModbusType.string: DataType.string,
}


def signal_address(device: ModbusDevice, unit_id: int, s: ModbusSignal) -> str:
    """``modbus://plc1/1/holding/100:float32:CDAB`` (address as written in the config)."""
    t = s.value_type
    addr = f"modbus://{device.name}/{unit_id}/{s.table.value}/{s.address}:{t.value}"
    if t is ModbusType.bit:
        return f"{addr}.{s.bit}"
    if t in (ModbusType.bool, ModbusType.uint16, ModbusType.int16) and s.byte_order is None and device.byte_order.value == "ABCD":
        return addr
    if t is ModbusType.string or t is ModbusType.bcd:
        addr += f"[{s.width}]"
    return f"{addr}:{(s.byte_order or device.byte_order).value}"


@dataclass(slots=True)
class PlannedBlock:
    block: ReadBlock
    ids: np.ndarray  # int32 signal ids, in decoder order
    decoder: BlockDecoder


class GroupPlan(list):
    """A poll group's blocks in read order, with the concatenated signal ids of a full cycle and
    each block's row range in it (so a cycle fills one set of arrays, no per-block chunks)."""

    def __init__(self, blocks: list[PlannedBlock]) -> None:
        super().__init__(blocks)
        sizes = [len(pb.ids) for pb in blocks]
        self.bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
        self.ids = np.concatenate([pb.ids for pb in blocks]) if blocks else np.empty(0, dtype=np.int32)
        self.has_text = any(pb.decoder.has_text for pb in blocks)


def plan_device(config: ModbusConfig, device: ModbusDevice, register) -> dict[str, list[PlannedBlock]]:
    """Register the device's signals (``register(SignalSpec) -> id``) and plan its reads per
    poll group. Pure apart from ``register``; used by the connector and the benchmark."""
    base = 1 if device.addressing.value == "one_based" else 0
    groups: dict[str, list[PlannedBlock]] = {g: [] for g in device.group_intervals()}
    for unit in device.units:
        unit_asset = unit.asset or device.asset or config.asset
        by_key: dict[tuple[str, Table], list[ReadItem]] = {}
        for i, s in enumerate(unit.signals):
            by_key.setdefault((s.poll_group, s.table), []).append(ReadItem(i, s.address - base, s.width))
        ids_of = {}
        for i, s in enumerate(unit.signals):
            scaled = s.scale != 1.0 or s.offset != 0.0
            dtype = _DTYPES[s.value_type]
            if scaled and dtype is not DataType.string:
                dtype = DataType.float64
            ids_of[i] = register(
                SignalSpec(
                    name=s.name,
                    asset=s.asset or unit_asset,
                    dtype=dtype,
                    unit=s.unit,
                    address=signal_address(device, unit.unit_id, s),
                    connector=config.id,
                    semantic_id=s.semantic_id,
                    description=s.description,
                )
            )
        for (group, table), items in by_key.items():
            if table.is_bits:
                blocks = plan_blocks(unit.unit_id, table, items, max_count=device.max_bits_per_request, max_gap=device.max_gap_bits)
            else:
                blocks = plan_blocks(unit.unit_id, table, items, max_count=device.max_registers_per_request, max_gap=device.max_gap_registers)
            for b in blocks:
                fields = []
                for it in b.items:
                    s = unit.signals[it.key]
                    fields.append(
                        FieldSpec(
                            offset=it.start - b.start,
                            type=s.value_type,
                            width=s.width,
                            byte_order=s.byte_order or device.byte_order,
                            bit=s.bit,
                            scale=s.scale,
                            value_offset=s.offset,
                        )
                    )
                ids = np.array([ids_of[it.key] for it in b.items], dtype=np.int32)
                groups[group].append(PlannedBlock(b, ids, BlockDecoder(fields, bits=table.is_bits)))
    for blocks in groups.values():
        blocks.sort(key=lambda p: (p.block.unit_id, p.block.table.value, p.block.start))
    return {g: GroupPlan(b) for g, b in groups.items() if b}


def _cancel_lost() -> None:
    """Re-raise a cancellation that ``asyncio.wait_for`` swallowed inside pymodbus: on Python
    3.11 a response arriving in the same loop turn as the cancel returns the result and drops the
    cancel (gh-86296), which left a fast-polling unit running through agent shutdown."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass(slots=True)
class _Cycle:
    """One poll cycle's arrays (rows in :class:`GroupPlan` order) and outcome."""

    value: np.ndarray
    valid: np.ndarray
    quality: np.ndarray
    t: np.ndarray  # response time of each row's block
    ok: np.ndarray  # per block: read and decoded
    text: list[str | None] | None
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (block index, quality)
    failed: set[int] = field(default_factory=set)
    timeouts: int = 0
    lost: NotConnected | None = None


def _good_chunk(blocks: GroupPlan, cyc: _Cycle) -> SampleChunk:
    """The cycle's good rows as one chunk (every block's rows when every read succeeded)."""
    if cyc.ok.all():
        sid, t, value, valid, quality, text = blocks.ids.copy(), cyc.t, cyc.value, cyc.valid, cyc.quality, cyc.text
    else:
        rows = np.concatenate([np.arange(blocks.bounds[i], blocks.bounds[i + 1]) for i in np.flatnonzero(cyc.ok)])
        sid, t, value, valid, quality = blocks.ids[rows], cyc.t[rows], cyc.value[rows], cyc.valid[rows], cyc.quality[rows]
        text = [cyc.text[r] for r in rows.tolist()] if cyc.text is not None else None
    return SampleChunk(
        signal_id=sid,
        source_time_ns=t,
        receive_time_ns=t.copy(),
        value=value,
        quality=quality,
        valid=None if valid.all() else valid,
        text=text,
    )


class ModbusDeviceConnector(Connector):
    """Polls one Modbus device (all its units) on the device's poll groups."""

    def __init__(self, config: ModbusConfig, device: ModbusDevice, ctx: ConnectorContext) -> None:
        super().__init__(config, ctx, name=f"{config.id}/{device.name}")
        self.device = device
        # one connection per request in flight: a connection carries one transaction at a time
        # (many devices, and the pymodbus server, do not answer pipelined requests on one
        # socket); link 0 is the one that must connect
        self._links = [ModbusLink(device) for _ in range(device.max_concurrent_requests)]
        self._link = self._links[0]
        self._groups: dict[str, GroupPlan] | None = None
        self._lock = asyncio.Lock()  # one request at a time per device
        self._failing: set[tuple[int, str, int]] = set()  # blocks whose failure was already logged
        self.requests = 0  # requests sent (benchmarks, probe)

    @property
    def groups(self) -> dict[str, GroupPlan]:
        if self._groups is None:
            self._groups = plan_device(self.config, self.device, self.ctx.register)
        return self._groups

    async def connect(self) -> None:
        _ = self.groups  # register signals before the first read
        await self._link.connect()
        await self._connect_extra()

    async def _connect_extra(self) -> None:
        """The extra connections of ``max_concurrent_requests``: a device that refuses them is
        polled over fewer (logged once per connect, counted), never not at all."""
        if len(self._links) == 1:
            return
        results = await asyncio.gather(*(link.connect() for link in self._links[1:]), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, NotConnected):
                raise r
        refused = sum(isinstance(r, NotConnected) for r in results)
        if refused:
            self.ctx.metrics.count_error("extra_connection_refused", refused)
            self.ctx.log.warning(
                "modbus device %s accepted %d of %d connections (max_concurrent_requests); polling with fewer",
                self.device.name, len(self._links) - refused, len(self._links), extra={"connector": self.name},
            )

    async def run(self) -> None:
        intervals = self.device.group_intervals()

        def overrun(n: int) -> None:
            self.ctx.metrics.count_error("poll_overrun", n)

        tasks = [
            asyncio.create_task(ticker(intervals[g], lambda g=g: self.poll_group(g), self.ctx.clock, overrun), name=f"{self.name}/{g}")
            for g in self.groups
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()  # re-raise the typed error for the runtime
        finally:
            pending = set(tasks)
            while pending:  # re-cancel: a cancellation can be lost inside a read (see _cancel_lost)
                for t in pending:
                    t.cancel()
                _, pending = await asyncio.wait(pending, timeout=0.5)

    async def poll(self) -> None:
        """One cycle of every poll group (probe, tests, benchmarks)."""
        for g in self.groups:
            await self.poll_group(g)

    async def poll_group(self, group: str) -> None:
        async with self._lock:
            close_after = self.device.connection is ConnectionMode.close_after_poll
            if close_after and not self._link.connected:
                await self._link.connect()
                await self._connect_extra()
            try:
                await self._cycle(self.groups[group])
            finally:
                if close_after:
                    for link in self._links:
                        link.close()

    async def _cycle(self, blocks: GroupPlan) -> None:
        n_rows = blocks.bounds[-1]
        cyc = _Cycle(
            value=np.empty(n_rows, dtype=np.float64),
            valid=np.ones(n_rows, dtype=bool),
            quality=np.zeros(n_rows, dtype=np.uint32),
            t=np.empty(n_rows, dtype=np.int64),
            ok=np.zeros(len(blocks), dtype=bool),
            text=[None] * n_rows if blocks.has_text else None,
        )
        todo = deque(range(len(blocks)))  # block indexes not read yet, shared by the connections
        for link in self._links[1:]:
            if link.dropped:
                self._retire(link, "closed by the device")
        extra = [link for link in self._links[1:] if link.connected]
        if extra:
            tasks = [asyncio.create_task(self._read_blocks(link, blocks, todo, cyc)) for link in (self._link, *extra)]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:  # on an error or a cancel, stop the other connections' reads too
                    task.cancel()
            _cancel_lost()
        if todo:  # sequential, or blocks handed back by an extra connection the device dropped
            await self._read_blocks(self._link, blocks, todo, cyc)
        if cyc.lost is not None:  # blocks not read once the connection was lost
            for i in range(len(blocks)):
                if not cyc.ok[i] and i not in cyc.failed:
                    cyc.gaps.append((i, Quality.BAD_NOT_CONNECTED))
        # emitted only when the cycle ends (not when cancelled mid-cycle at shutdown)
        if cyc.ok.any():
            await self.ctx.emit(_good_chunk(blocks, cyc))
        for i, q in sorted(cyc.gaps):
            await self.ctx.emit_gap(blocks[i].ids, q)
        if cyc.lost is not None:
            raise cyc.lost
        if blocks and cyc.timeouts == len(blocks):
            raise ConnectorTimeout(f"modbus device {self.device.name} ({self.device.endpoint()}): no response to any request of the cycle")

    async def _read_blocks(self, link: ModbusLink, blocks: GroupPlan, todo: deque[int], cyc: _Cycle) -> None:
        """Read blocks (indexes taken from the shared ``todo``) over one connection, one request
        at a time, decoding each into the cycle's arrays; stop once the device is lost."""
        pause = self.device.pause_between_requests_secs
        while todo and cyc.lost is None:
            i = todo.popleft()
            pb = blocks[i]
            if i and pause:
                await asyncio.sleep(pause)
            self.requests += 1
            try:
                data = await link.read(pb.block)
            except ModbusExceptionResponse as exc:
                q = Quality.BAD_OUT_OF_RANGE if exc.code == 2 else Quality.BAD_COMMUNICATION_ERROR
                self._block_failed(pb, "exception_response", str(exc), cyc, i, q)
                continue
            except ConnectorTimeout as exc:
                cyc.timeouts += 1
                self._block_failed(pb, "timeout", str(exc), cyc, i, Quality.BAD_TIMEOUT)
                continue
            except NotConnected as exc:
                if link is not self._link:
                    # an extra connection dropped (a device limiting its sessions closes it):
                    # hand the block back and go on over the others until the next connect()
                    todo.appendleft(i)
                    self._retire(link, str(exc))
                    return
                if cyc.lost is None:
                    self.ctx.metrics.count_error("connection_lost")
                    cyc.lost = exc
                return
            except ProtocolError as exc:
                self._block_failed(pb, "protocol", str(exc), cyc, i, Quality.BAD_COMMUNICATION_ERROR)
                continue
            _cancel_lost()
            t = time.time_ns()
            self._block_ok(pb)
            a, b = blocks.bounds[i], blocks.bounds[i + 1]
            text = pb.decoder.decode_into(data, cyc.value[a:b], cyc.valid[a:b], cyc.quality[a:b])
            cyc.t[a:b] = t
            cyc.ok[i] = True
            if text is not None:
                cyc.text[a:b] = text
            if pb.decoder.can_fail:
                bad = int(np.count_nonzero(cyc.quality[a:b]))
                if bad:
                    self.ctx.metrics.count_error("decode", bad)

    def _retire(self, link: ModbusLink, why: str) -> None:
        """An extra connection of ``max_concurrent_requests`` is gone: poll over the others until
        the next connect() (no reconnect per cycle: a device limiting its sessions would see a
        flood of them)."""
        link.close()
        self.ctx.metrics.count_error("extra_connection_lost")
        self.ctx.log.warning(
            "modbus device %s: extra connection lost (%s); polling over %d connection(s)",
            self.device.name, why, sum(lk.connected for lk in self._links), extra={"connector": self.name},
        )

    def _block_key(self, pb: PlannedBlock) -> tuple[int, str, int]:
        return (pb.block.unit_id, pb.block.table.value, pb.block.start)

    def _block_failed(self, pb: PlannedBlock, kind: str, msg: str, cyc: _Cycle, i: int, quality: int) -> None:
        self.ctx.metrics.count_error(kind)
        cyc.gaps.append((i, quality))
        cyc.failed.add(i)
        key = self._block_key(pb)
        if key not in self._failing:  # log state changes, not every cycle
            self._failing.add(key)
            self.ctx.log.warning("modbus read failed: %s", msg, extra={"connector": self.name, "error_type": kind})

    def _block_ok(self, pb: PlannedBlock) -> None:
        if not self._failing:
            return
        key = self._block_key(pb)
        if key in self._failing:
            self._failing.discard(key)
            self.ctx.log.info("modbus read recovered: %s", describe(self.device, pb.block), extra={"connector": self.name})

    async def aclose(self) -> None:
        for link in self._links:
            link.close()

    async def probe(self) -> dict:
        await self.connect()
        try:
            await self.poll()
        finally:
            await self.aclose()
        return {"ok": True, "device": self.device.name, "requests": self.requests}


def build(config: ModbusConfig, ctx: ConnectorContext) -> list[Connector]:
    """One unit per device, so the runtime supervises (and reconnects) each device on its own."""
    return [ModbusDeviceConnector(config, d, ctx) for d in config.devices]
