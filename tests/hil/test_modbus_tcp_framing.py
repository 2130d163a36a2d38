"""The connector's own Modbus TCP client (MBAP framing) against a scripted device on a real socket.

The simulator (pymodbus server) answers well; these devices misbehave on purpose, one way each:
answers cut into pieces, late answers to a timed-out request, an answer from another unit, a
malformed answer. Each must end as the right value or the right bad quality, never as a wrong
value."""

import asyncio
import struct

import numpy as np
import pytest

from connectors.base import ConnectorContext
from connectors.modbus.connector import build
from dataset_builder.format import Quality
from edge_agent.config import load_config_text
from edge_agent.core.channel import BoundedChannel
from edge_agent.errors import ConnectorTimeout
from edge_agent.signals import SignalCatalog


def holding_answer(tid: int, unit: int, words: list[int]) -> bytes:
    pdu = struct.pack(">BB", 3, 2 * len(words)) + struct.pack(f">{len(words)}H", *words)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


class ScriptedDevice:
    """Reads 12-byte MBAP requests; ``answer(tid, unit, fc, start, count, n)`` returns the bytes
    to send back (n counts requests from 0), or a list of (delay_secs, bytes) pieces."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests = 0
        self.server = None
        self.port = 0

    async def _handle(self, reader, writer):
        try:
            while True:
                req = await reader.readexactly(12)
                tid, _, _, unit, fc, start, count = struct.unpack(">HHHBBHH", req)
                out = self.answer(tid, unit, fc, start, count, self.requests)
                self.requests += 1
                for delay, piece in out if isinstance(out, list) else [(0.0, out)]:
                    if delay:
                        await asyncio.sleep(delay)
                    writer.write(piece)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def unit_for(port: int, **device):
    doc = f"""
connectors:
  - id: mb
    type: modbus
    asset: plant/line1
    devices:
      - name: dev
        host: 127.0.0.1
        port: {port}
        request_timeout_secs: {device.pop("request_timeout_secs", 0.3)}
        units: [{{unit_id: 1, signals: [{{name: a, address: 0, type: float32}}, {{name: b, address: 2}}]}}]
"""
    cfg = load_config_text(doc, fname="plant.yaml").connectors[0]
    ch = BoundedChannel(1000, 1_000_000)
    ctx = ConnectorContext("mb", SignalCatalog(), ch.send)
    (unit,) = build(cfg, ctx)
    return unit, ctx, ch


WORDS = [0x4049, 0x0FD0, 7]  # float32 3.1415901184082031 (ABCD), uint16 7


async def rows(ch):
    out = []
    while len(ch):
        c = await ch.recv()
        out.append(c)
    return out


async def test_answer_in_pieces_is_reassembled():
    def answer(tid, unit, fc, start, count, n):
        frame = holding_answer(tid, unit, WORDS)
        return [(0.0, frame[:3]), (0.02, frame[3:9]), (0.02, frame[9:])]

    async with ScriptedDevice(answer) as dev:
        unit, ctx, ch = unit_for(dev.port)
        await unit.connect()
        await unit.poll()
        await unit.aclose()
    (c,) = await rows(ch)
    assert c.value.tolist() == [float(np.float32(3.14159)), 7.0] and c.valid is None and (c.quality == 0).all()


async def test_late_answer_to_a_timed_out_request_is_not_taken_for_the_next():
    def answer(tid, unit, fc, start, count, n):
        if n == 0:  # the first answer arrives after the timeout, with other values
            return [(0.5, holding_answer(tid, unit, [0, 0, 99]))]
        return holding_answer(tid, unit, WORDS)

    async with ScriptedDevice(answer) as dev:
        unit, ctx, ch = unit_for(dev.port, request_timeout_secs=0.3)
        await unit.connect()
        with pytest.raises(ConnectorTimeout):
            await unit.poll()  # the only block timed out
        await asyncio.sleep(0.4)  # the late answer lands in between
        await unit.poll()
        await unit.aclose()
    gap, good = await rows(ch)
    assert (gap.quality == Quality.BAD_TIMEOUT).all()
    assert good.value.tolist() == [float(np.float32(3.14159)), 7.0]


@pytest.mark.parametrize(
    "bad, quality, error",
    [
        (lambda tid: holding_answer(tid, 9, WORDS), Quality.BAD_COMMUNICATION_ERROR, "protocol"),  # another unit
        (lambda tid: holding_answer(tid, 1, WORDS[:2]), Quality.BAD_COMMUNICATION_ERROR, "protocol"),  # short
        (lambda tid: struct.pack(">HHHBBB", tid, 0, 3, 1, 0x83, 2), Quality.BAD_OUT_OF_RANGE, "exception_response"),
        (lambda tid: struct.pack(">HHHBBB", tid, 0, 3, 1, 0x83, 6), Quality.BAD_COMMUNICATION_ERROR, "exception_response"),
    ],
    ids=["other-unit", "short", "exception-2", "exception-6"],
)
async def test_unfitting_answer_is_a_bad_row_and_the_next_cycle_reads(bad, quality, error):
    def answer(tid, unit, fc, start, count, n):
        return bad(tid) if n == 0 else holding_answer(tid, unit, WORDS)

    async with ScriptedDevice(answer) as dev:
        unit, ctx, ch = unit_for(dev.port)
        await unit.connect()
        await unit.poll()
        await unit.poll()
        await unit.aclose()
    gap, good = await rows(ch)
    assert (gap.quality == quality).all() and not gap.valid.any()
    assert good.value.tolist() == [float(np.float32(3.14159)), 7.0]
    assert ctx.metrics.errors == {error: 1}


async def test_device_that_answers_with_transaction_id_zero_is_read():
    async with ScriptedDevice(lambda tid, unit, fc, start, count, n: holding_answer(0, unit, WORDS)) as dev:
        unit, ctx, ch = unit_for(dev.port)
        await unit.connect()
        await unit.poll()
        await unit.aclose()
    (c,) = await rows(ch)
    assert c.value.tolist() == [float(np.float32(3.14159)), 7.0]


async def test_garbage_header_drops_the_buffer_and_times_out():
    def answer(tid, unit, fc, start, count, n):
        if n == 0:
            return b"\x00\x01\xff\xff\x00\x06" + b"\x01\x03\x04\x00\x00\x00"  # protocol id 0xFFFF
        return holding_answer(tid, unit, WORDS)

    async with ScriptedDevice(answer) as dev:
        unit, ctx, ch = unit_for(dev.port, request_timeout_secs=0.2)
        await unit.connect()
        with pytest.raises(ConnectorTimeout):
            await unit.poll()
        await unit.poll()
        await unit.aclose()
    gap, good = await rows(ch)
    assert (gap.quality == Quality.BAD_TIMEOUT).all()
    assert good.value.tolist() == [float(np.float32(3.14159)), 7.0]
