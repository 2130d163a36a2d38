"""The wire boundary: one client per device connection, read-only calls, errors translated once.

Only read functions (1, 2, 3, 4) are ever sent: axedge never writes to a device.

* Modbus TCP (MBAP framing) uses :class:`MbapClient` below: a read request is 12 bytes and its
  response a fixed header and the data, so a small asyncio protocol does it with one write and a
  timer per request, about half of pymodbus' CPU per request on the benchmark map.
* RTU on a serial line and RTU framed over TCP use pymodbus (CRC, inter-frame timing, serial
  ports), imported inside functions so the config layer stays light.
"""

from __future__ import annotations

import asyncio
import struct

import numpy as np

from connectors.modbus.config import ModbusDevice, Parity, Table, TransportKind
from connectors.modbus.plan import ReadBlock
from edge_agent.errors import ConnectorTimeout, NotConnected, ProtocolError

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusExceptionResponse(ProtocolError):
    """The device answered a read with a Modbus exception (e.g. illegal data address)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def describe(device: ModbusDevice, block: ReadBlock) -> str:
    """``device plc1 (10.0.0.5:502) unit 1 holding 100..124`` in the config's numbering."""
    base = 1 if device.addressing.value == "one_based" else 0
    return (
        f"device {device.name} ({device.endpoint()}) unit {block.unit_id} {block.table.value} "
        f"{block.start + base}..{block.end + base}"
    )


_FC = {Table.coil: 1, Table.discrete_input: 2, Table.holding: 3, Table.input: 4}
_REQUEST = struct.Struct(">HHHBBHH")  # MBAP (transaction, protocol 0, length 6, unit) + read PDU
_MBAP = struct.Struct(">HHHB")


class _NoResponse(Exception):
    """No valid response within the request timeout."""


class _MbapProtocol(asyncio.Protocol):
    """Frames MBAP responses and hands the one with the awaited transaction id to its waiter.
    A frame with a protocol id other than 0 or an impossible length is garbage: the receive
    buffer is dropped (the request then times out, as with any unreadable response)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.tid = -1
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 8:
            tid, pid, length, _unit = _MBAP.unpack_from(buf)
            if pid != 0 or not 2 <= length <= 254:
                buf.clear()
                return
            if len(buf) < 6 + length:
                return
            frame = bytes(buf[: 6 + length])
            del buf[: 6 + length]
            w = self.waiter
            # transaction id 0: devices that do not echo the id (pymodbus takes those answers too)
            if w is not None and (tid == self.tid or tid == 0) and not w.done():
                w.set_result(frame)
            # else: a late answer to a timed-out request, or unsolicited: ignored

    def connection_lost(self, exc) -> None:
        self.lost = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(ConnectionResetError("connection closed by the device"))


def _timed_out(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(_NoResponse())


class MbapClient:
    """A Modbus TCP master for read requests, one transaction at a time per connection."""

    def __init__(self, host: str, port: int, timeout: float, retries: int) -> None:
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self._proto: _MbapProtocol | None = None
        self._next_tid = 0

    @property
    def connected(self) -> bool:
        p = self._proto
        return p is not None and not p.lost and p.transport is not None and not p.transport.is_closing()

    async def connect(self) -> bool:
        loop = asyncio.get_running_loop()
        _, self._proto = await loop.create_connection(_MbapProtocol, self.host, self.port)
        return True

    async def read(self, unit: int, fc: int, start: int, count: int) -> tuple[int, bytes]:
        """Returns (function code of the answer, PDU data after the function code)."""
        p = self._proto
        if p is None or not self.connected:
            raise ConnectionResetError("not connected")
        loop = asyncio.get_running_loop()
        self._next_tid = tid = self._next_tid % 65000 + 1
        request = _REQUEST.pack(tid, 0, 6, unit, fc, start, count)
        for _attempt in range(self.retries + 1):
            fut = loop.create_future()
            p.waiter, p.tid = fut, tid
            p.buf.clear()  # whatever is left belongs to an earlier request
            p.transport.write(request)
            timer = loop.call_later(self.timeout, _timed_out, fut)
            try:
                frame = await fut
            except _NoResponse:
                continue
            finally:
                timer.cancel()
                p.waiter = None
            if unit and frame[6] != unit:
                raise ModbusIOError(f"answer from unit {frame[6]} to a request for unit {unit}")
            return frame[7], frame[8:]
        raise _NoResponse()

    def close(self) -> None:
        p, self._proto = self._proto, None
        if p is not None and p.transport is not None:
            p.transport.close()


class ModbusIOError(ProtocolError):
    """A response that does not fit the request."""


class ModbusLink:
    """One device's connection. ``read`` returns the block as uint16 registers or bools."""

    def __init__(self, device: ModbusDevice) -> None:
        self.device = device
        self._client = None
        self._readers: dict = {}

    def _make_client(self):
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
        from pymodbus.framer import FramerType

        d = self.device
        if d.transport is TransportKind.tcp:
            return MbapClient(d.host, d.port, d.request_timeout_secs, d.retries)
        common = dict(timeout=d.request_timeout_secs, retries=d.retries, reconnect_delay=0, name=d.name)
        if d.transport is TransportKind.rtu:
            parity = {Parity.none: "N", Parity.even: "E", Parity.odd: "O"}[d.parity]
            return AsyncModbusSerialClient(
                d.serial_port, framer=FramerType.RTU, baudrate=d.baudrate, parity=parity,
                stopbits=d.stop_bits, bytesize=d.byte_size, **common,
            )
        framer = FramerType.RTU if d.transport is TransportKind.rtu_over_tcp else FramerType.SOCKET
        return AsyncModbusTcpClient(d.host, port=d.port, framer=framer, **common)

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    @property
    def dropped(self) -> bool:
        """Opened, then closed by the other side (not by :meth:`close`)."""
        return self._client is not None and not self._client.connected

    async def connect(self) -> None:
        self.close()
        self._client = self._make_client()
        try:
            ok = await asyncio.wait_for(self._client.connect(), self.device.request_timeout_secs + 1.0)
        except (OSError, asyncio.TimeoutError) as exc:
            self.close()
            raise NotConnected(f"modbus device {self.device.name} at {self.device.endpoint()} unreachable: {exc!r}") from exc
        if not ok:
            self.close()
            raise NotConnected(f"modbus device {self.device.name} at {self.device.endpoint()} unreachable")
        c = self._client
        if isinstance(c, MbapClient):
            return
        self._readers = {  # read functions only: axedge never writes to a device
            Table.holding: c.read_holding_registers,
            Table.input: c.read_input_registers,
            Table.coil: c.read_coils,
            Table.discrete_input: c.read_discrete_inputs,
        }

    async def read(self, block: ReadBlock) -> np.ndarray:
        if not self.connected:
            raise NotConnected(f"modbus device {self.device.name} at {self.device.endpoint()}: connection lost")
        if isinstance(self._client, MbapClient):
            return await self._read_mbap(block)
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        fn = self._readers[block.table]
        try:
            rr = await fn(block.start, count=block.count, device_id=block.unit_id)
        except ConnectionException as exc:
            raise NotConnected(f"modbus {describe(self.device, block)}: connection lost") from exc
        except ModbusIOException as exc:
            if not self.connected:
                raise NotConnected(f"modbus {describe(self.device, block)}: connection lost") from exc
            raise ConnectorTimeout(
                f"modbus {describe(self.device, block)}: no valid response within {self.device.request_timeout_secs}s"
            ) from exc
        except ModbusException as exc:
            raise ProtocolError(f"modbus {describe(self.device, block)}: {exc}") from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise ModbusExceptionResponse(f"modbus {describe(self.device, block)}: exception {code} ({name})", code)
        if block.table.is_bits:
            bits = rr.bits
            if len(bits) < block.count:
                raise ProtocolError(f"modbus {describe(self.device, block)}: short response ({len(bits)} bits)")
            return np.asarray(bits[: block.count], dtype=bool)
        regs = rr.registers
        if len(regs) != block.count:
            raise ProtocolError(f"modbus {describe(self.device, block)}: {len(regs)} registers in response, expected {block.count}")
        return np.asarray(regs, dtype=np.uint16)

    async def _read_mbap(self, block: ReadBlock) -> np.ndarray:
        fc = _FC[block.table]
        try:
            got_fc, data = await self._client.read(block.unit_id, fc, block.start, block.count)
        except (ConnectionError, OSError) as exc:
            raise NotConnected(f"modbus {describe(self.device, block)}: connection lost") from exc
        except _NoResponse as exc:
            raise ConnectorTimeout(
                f"modbus {describe(self.device, block)}: no valid response within {self.device.request_timeout_secs}s"
            ) from exc
        except ModbusIOError as exc:
            raise ProtocolError(f"modbus {describe(self.device, block)}: {exc}") from exc
        if got_fc == fc | 0x80 and len(data) >= 1:
            code = data[0]
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise ModbusExceptionResponse(f"modbus {describe(self.device, block)}: exception {code} ({name})", code)
        if got_fc != fc or len(data) < 1 or data[0] != len(data) - 1:
            raise ProtocolError(f"modbus {describe(self.device, block)}: malformed response (function {got_fc}, {len(data)} bytes)")
        payload = data[1:]
        if block.table.is_bits:
            if len(payload) * 8 < block.count:
                raise ProtocolError(f"modbus {describe(self.device, block)}: short response ({len(payload) * 8} bits)")
            bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), bitorder="little")
            return bits[: block.count].astype(bool)
        if len(payload) != 2 * block.count:
            raise ProtocolError(f"modbus {describe(self.device, block)}: {len(payload) // 2} registers in response, expected {block.count}")
        return np.frombuffer(payload, dtype=">u2")  # the wire bytes: the decoder reads values from them

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()
