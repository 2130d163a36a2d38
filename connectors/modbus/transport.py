"""The pymodbus boundary: one client per device, read-only calls, errors translated once.

Only read functions (1, 2, 3, 4) are ever sent: axedge never writes to a device. pymodbus is
imported here, inside functions, so the config layer stays light.
"""

from __future__ import annotations

import asyncio

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
        self._readers = {  # read functions only: axedge never writes to a device
            Table.holding: c.read_holding_registers,
            Table.input: c.read_input_registers,
            Table.coil: c.read_coils,
            Table.discrete_input: c.read_discrete_inputs,
        }

    async def read(self, block: ReadBlock) -> np.ndarray:
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        if not self.connected:
            raise NotConnected(f"modbus device {self.device.name} at {self.device.endpoint()}: connection lost")
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

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()
