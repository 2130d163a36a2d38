"""Modbus connector: one supervised unit per device, each poll group on its own schedule.

Per poll cycle a unit reads its planned blocks one after the other (a device answers one
request at a time), decodes every block with numpy and emits **one** chunk of good values plus,
when something failed, one chunk of gap rows. Failures are kept apart:

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
from dataclasses import dataclass

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
    return {g: b for g, b in groups.items() if b}


def _cancel_lost() -> None:
    """Re-raise a cancellation that ``asyncio.wait_for`` swallowed inside pymodbus: on Python
    3.11 a response arriving in the same loop turn as the cancel returns the result and drops the
    cancel (gh-86296), which left a fast-polling unit running through agent shutdown."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _concat(parts: list[tuple]) -> SampleChunk:
    """One chunk from per-block (ids, t_ns, value, valid, quality, text) tuples."""
    sid = np.concatenate([p[0] for p in parts])
    t = np.concatenate([np.full(len(p[0]), p[1], dtype=np.int64) for p in parts])
    valid = np.concatenate([p[3] for p in parts])
    text = None
    if any(p[5] is not None for p in parts):
        text = []
        for p in parts:
            text.extend(p[5] if p[5] is not None else [None] * len(p[0]))
    return SampleChunk(
        signal_id=sid,
        source_time_ns=t,
        receive_time_ns=t.copy(),
        value=np.concatenate([p[2] for p in parts]),
        quality=np.concatenate([p[4] for p in parts]),
        valid=None if valid.all() else valid,
        text=text,
    )


class ModbusDeviceConnector(Connector):
    """Polls one Modbus device (all its units) on the device's poll groups."""

    def __init__(self, config: ModbusConfig, device: ModbusDevice, ctx: ConnectorContext) -> None:
        super().__init__(config, ctx, name=f"{config.id}/{device.name}")
        self.device = device
        self._link = ModbusLink(device)
        self._groups: dict[str, list[PlannedBlock]] | None = None
        self._lock = asyncio.Lock()  # one request at a time per device
        self._failing: set[tuple[int, str, int]] = set()  # blocks whose failure was already logged
        self.requests = 0  # requests sent (benchmarks, probe)

    @property
    def groups(self) -> dict[str, list[PlannedBlock]]:
        if self._groups is None:
            self._groups = plan_device(self.config, self.device, self.ctx.register)
        return self._groups

    async def connect(self) -> None:
        _ = self.groups  # register signals before the first read
        await self._link.connect()

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
            try:
                await self._cycle(self.groups[group])
            finally:
                if close_after:
                    self._link.close()

    async def _cycle(self, blocks: list[PlannedBlock]) -> None:
        good: list[tuple] = []
        gaps: list[tuple[np.ndarray, int]] = []
        timeouts = 0
        lost: NotConnected | None = None
        pause = self.device.pause_between_requests_secs
        for i, pb in enumerate(blocks):
            if i and pause:
                await asyncio.sleep(pause)
            self.requests += 1
            try:
                data = await self._link.read(pb.block)
            except ModbusExceptionResponse as exc:
                q = Quality.BAD_OUT_OF_RANGE if exc.code == 2 else Quality.BAD_COMMUNICATION_ERROR
                self._block_failed(pb, "exception_response", str(exc), gaps, q)
                continue
            except ConnectorTimeout as exc:
                timeouts += 1
                self._block_failed(pb, "timeout", str(exc), gaps, Quality.BAD_TIMEOUT)
                continue
            except NotConnected as exc:
                gaps.extend((rest.ids, Quality.BAD_NOT_CONNECTED) for rest in blocks[i:])
                self.ctx.metrics.count_error("connection_lost")
                lost = exc
                break
            except ProtocolError as exc:
                self._block_failed(pb, "protocol", str(exc), gaps, Quality.BAD_COMMUNICATION_ERROR)
                continue
            _cancel_lost()
            t = time.time_ns()
            self._block_ok(pb)
            value, valid, quality, text = pb.decoder.decode(data)
            if quality.any():
                self.ctx.metrics.count_error("decode", int(np.count_nonzero(quality)))
            good.append((pb.ids, t, value, valid, quality, text))
        # emitted only when the cycle ends (not when cancelled mid-cycle at shutdown)
        if good:
            await self.ctx.emit(_concat(good))
        for ids, q in gaps:
            await self.ctx.emit_gap(ids, q)
        if lost is not None:
            raise lost
        if blocks and timeouts == len(blocks):
            raise ConnectorTimeout(f"modbus device {self.device.name} ({self.device.endpoint()}): no response to any request of the cycle")

    def _block_key(self, pb: PlannedBlock) -> tuple[int, str, int]:
        return (pb.block.unit_id, pb.block.table.value, pb.block.start)

    def _block_failed(self, pb: PlannedBlock, kind: str, msg: str, gaps: list, quality: int) -> None:
        self.ctx.metrics.count_error(kind)
        gaps.append((pb.ids, quality))
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
        self._link.close()

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
