"""A small Modbus device built on the pymodbus server: register images per unit id, served over
TCP (MBAP or RTU framing) or a serial line, with switchable misbehaviour for fault injection
(slow responses, garbage frames, exception responses, going away and coming back).

Used by the casting-line simulator and by tests that load a register image from JSON. Imports
nothing of the agent: it behaves like an independent device.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import Iterable

import numpy as np

TABLES = ("coil", "discrete_input", "holding", "input")
_FC_TABLE = {1: "coil", 2: "discrete_input", 3: "holding", 4: "input"}
_SIZE = 65536

logging.getLogger("pymodbus").setLevel(logging.WARNING)


class RegisterImage:
    """The four tables of one unit. Only declared ranges are readable; other addresses answer
    with exception 2 (illegal data address), like a real PLC."""

    def __init__(self, ranges: dict[str, Iterable[tuple[int, int]]] | None = None) -> None:
        self.words = {t: np.zeros(_SIZE, dtype=np.uint16) for t in ("holding", "input")}
        self.bits = {t: np.zeros(_SIZE, dtype=bool) for t in ("coil", "discrete_input")}
        self.ranges: dict[str, list[tuple[int, int]]] = {t: [] for t in TABLES}
        for t, rs in (ranges or {}).items():
            for start, count in rs:
                self.declare(t, start, count)

    def declare(self, table: str, start: int, count: int) -> None:
        if table not in TABLES or start < 0 or count < 1 or start + count > _SIZE:
            raise ValueError(f"bad range {table} {start}+{count}")
        self.ranges[table].append((start, count))

    def set_words(self, table: str, address: int, words: Iterable[int]) -> None:
        w = np.asarray(list(words), dtype=np.uint16)
        self.words[table][address : address + len(w)] = w

    def set_bits(self, table: str, address: int, bits: Iterable[bool]) -> None:
        b = np.asarray(list(bits), dtype=bool)
        self.bits[table][address : address + len(b)] = b

    def simdata(self):
        """The pymodbus SimData layout (coils, discrete inputs, holding, input) of the ranges."""
        from pymodbus.simulator import DataType, SimData

        out = []
        for t in TABLES:
            rs = sorted(self.ranges[t]) or [(_SIZE - 16, 16)]  # pymodbus needs one range per table
            merged: list[list[int]] = []
            for s, c in rs:
                if merged and s <= merged[-1][0] + merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], s + c - merged[-1][0])
                else:
                    merged.append([s, c])
            if t in ("coil", "discrete_input"):
                # values as a list with count=1: pymodbus' overlap check squares ``count`` for bits
                out.append([SimData(s, values=[False] * c, datatype=DataType.BITS) for s, c in merged])
            else:
                out.append([SimData(s, count=c, values=0, datatype=DataType.REGISTERS) for s, c in merged])
        return tuple(out)

    def fill(self, table: str, start_reg: int, address: int, count: int, regs: list[int]) -> None:
        """Copy the requested range into pymodbus' register list (``start_reg`` = its index 0;
        for bit tables ``start_reg`` and ``count`` are in 16-bit registers)."""
        if table in self.words:
            regs[address - start_reg : address - start_reg + count] = self.words[table][address : address + count].tolist()
            return
        # bit tables: pymodbus passes ``count`` in 16-bit registers starting at register address // 16
        r0 = address // 16
        packed = np.packbits(self.bits[table][r0 * 16 : (r0 + count) * 16], bitorder="little").view("<u2")
        regs[r0 - start_reg : r0 - start_reg + count] = packed.tolist()


# --- value encoding (independent of the agent's decoder, so tests check one against the other)

_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q", "float32": "f", "float64": "d"}


def encode(value, type_: str, byte_order: str = "ABCD", count: int | None = None) -> list[int]:
    """Registers for ``value`` as a device would store it (``byte_order`` as in the connector)."""
    if type_ == "string":
        raw = str(value).encode("latin-1").ljust(2 * (count or 1), b"\x00")[: 2 * (count or 1)]
        words = [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]
        if byte_order in ("BADC", "DCBA"):
            words = [((w >> 8) | (w << 8)) & 0xFFFF for w in words]
        return words
    if type_ == "bcd":
        n = count or 1
        digits = f"{int(value):0{4 * n}d}"
        raw = int(digits, 16).to_bytes(2 * n, "big")
    else:
        raw = struct.pack(">" + _STRUCT[type_], value)
    words = [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]
    if byte_order in ("CDAB", "DCBA"):
        words.reverse()
    if byte_order in ("BADC", "DCBA"):
        words = [((w >> 8) | (w << 8)) & 0xFFFF for w in words]
    return words


class ModbusDeviceServer:
    """Serve ``units`` (unit id -> :class:`RegisterImage`).

    ``transport``: ``tcp`` (MBAP), ``rtu_over_tcp`` (RTU frames on TCP) or ``rtu`` (serial
    ``serial_port``). Misbehaviour switches, settable while serving: ``response_delay_secs``,
    ``garbage`` (replace responses with random bytes), ``busy`` (exception 6 for every read).
    ``max_in_flight`` records how many delayed requests overlapped (concurrent clients).
    ``max_connections`` (None: no limit) models a device with a session limit: a TCP connection
    beyond it is accepted and closed at once, as many PLCs do.
    """

    def __init__(
        self,
        units: dict[int, RegisterImage],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        transport: str = "tcp",
        serial_port: str | None = None,
        baudrate: int = 19200,
        parity: str = "E",
        seed: int = 0,
    ) -> None:
        self.units = units
        self.host = host
        self.port = port
        self.transport = transport
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.parity = parity
        self.response_delay_secs = 0.0
        self.garbage = False
        self.busy = False
        self.requests = 0
        self.function_codes: dict[int, int] = {}  # every request's function code, writes included (tests: read-only)
        self.in_flight = 0  # requests being answered right now (over all connections)
        self.max_in_flight = 0
        self.max_connections: int | None = None
        self._rng = random.Random(seed)
        self._server = None

    async def _action(self, unit_id: int, fc: int, start: int, address: int, count: int, regs: list[int], values):
        from pymodbus.constants import ExcCodes

        self.function_codes[fc] = self.function_codes.get(fc, 0) + 1
        if values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # read-only device image: refuse writes
        self.requests += 1
        if self.response_delay_secs > 0:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.response_delay_secs)
            finally:
                self.in_flight -= 1
        if self.busy:
            return ExcCodes.DEVICE_BUSY
        table = _FC_TABLE.get(fc)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        self.units[unit_id].fill(table, start, address, count, regs)
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self.garbage:
            return bytes(self._rng.getrandbits(8) for _ in range(max(3, len(data))))
        return data

    def _devices(self):
        from pymodbus.simulator import SimDevice

        devs = []
        for uid, image in self.units.items():

            async def action(fc, start, address, count, regs, values, _uid=uid):
                return await self._action(_uid, fc, start, address, count, regs, values)

            devs.append(SimDevice(uid, simdata=image.simdata(), action=action))
        return devs

    async def start(self) -> None:
        from pymodbus.framer import FramerType
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        if self.transport == "rtu":
            self._server = ModbusSerialServer(
                self._devices(), framer=FramerType.RTU, port=self.serial_port, baudrate=self.baudrate,
                parity=self.parity, trace_packet=self._trace_packet,
            )
            await self._server.serve_forever(background=True)
            return
        framer = FramerType.RTU if self.transport == "rtu_over_tcp" else FramerType.SOCKET
        self._server = ModbusTcpServer(
            self._devices(), framer=framer, address=(self.host, self.port), trace_packet=self._trace_packet
        )
        self._limit_sessions(self._server)
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]  # keep the port across restarts

    def _limit_sessions(self, server) -> None:
        new_connection = server.callback_new_connection

        def limited():
            handler = new_connection()
            made = handler.connection_made

            def connection_made(transport):
                made(transport)
                if self.max_connections is not None and len(server.active_connections) > self.max_connections:
                    transport.close()  # over the session limit: accepted, then closed

            handler.connection_made = connection_made
            return handler

        server.callback_new_connection = limited

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    async def restart(self, down_secs: float = 0.0) -> None:
        """Drop every connection and the listener, stay away ``down_secs``, come back on the same port."""
        await self.stop()
        await asyncio.sleep(down_secs)
        await self.start()

    async def __aenter__(self) -> ModbusDeviceServer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
