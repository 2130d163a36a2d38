"""Config of the ``modbus`` connector: devices -> units -> signals, poll groups, device quirks.

Plain pydantic (no pymodbus import). Validation catches what a commissioning engineer gets
wrong most: overlapping or out-of-range addresses, a type that does not fit ``count``, zero
intervals. Errors come out as ``plant.yaml:42 connectors[0].devices[0].units[0].signals[3]: ...``.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from edge_agent.config.base import AssetPath, ConnectorConfigBase, SignalConfigBase, StrictModel


def _fail(loc: tuple[str | int, ...], msg: str) -> None:
    """Raise a validation error located at ``loc`` below the current field (so the message
    carries the line of the offending key, not of the enclosing section)."""
    err = PydanticCustomError("modbus_config", "{msg}", {"msg": msg})
    raise ValidationError.from_exception_data("modbus", [InitErrorDetails(type=err, loc=loc, input=None)])


class Table(str, Enum):
    holding = "holding"  # function 3, 16-bit registers
    input = "input"  # function 4, 16-bit registers
    coil = "coil"  # function 1, bits
    discrete_input = "discrete_input"  # function 2, bits

    @property
    def is_bits(self) -> bool:
        return self in (Table.coil, Table.discrete_input)


class ModbusType(str, Enum):
    bool = "bool"  # a coil or discrete input
    bit = "bit"  # one bit (``bit: 0..15``) of a register
    int16 = "int16"
    uint16 = "uint16"
    int32 = "int32"
    uint32 = "uint32"
    int64 = "int64"
    uint64 = "uint64"
    float32 = "float32"
    float64 = "float64"
    bcd = "bcd"  # packed BCD, 4 digits per register (count 1 or 2)
    string = "string"  # ``count`` registers, 2 ASCII bytes each, NUL / space padded


#: registers taken by fixed-size types
TYPE_REGISTERS: dict[ModbusType, int] = {
    ModbusType.bit: 1,
    ModbusType.int16: 1,
    ModbusType.uint16: 1,
    ModbusType.int32: 2,
    ModbusType.uint32: 2,
    ModbusType.int64: 4,
    ModbusType.uint64: 4,
    ModbusType.float32: 2,
    ModbusType.float64: 4,
}


class ByteOrder(str, Enum):
    """Order of the bytes of a value as they come off the wire, A = most significant byte."""

    ABCD = "ABCD"  # big endian (Modbus standard, Motorola)
    DCBA = "DCBA"  # little endian (Intel)
    BADC = "BADC"  # big-endian words, bytes swapped inside each word
    CDAB = "CDAB"  # little-endian word order, big-endian words (common on PLCs, "word swap")


class Addressing(str, Enum):
    zero_based = "zero_based"  # address 0 is the first register on the wire (protocol address)
    one_based = "one_based"  # address 1 is the first register (manuals that count from 1)


class TransportKind(str, Enum):
    tcp = "tcp"  # Modbus TCP (MBAP framing)
    rtu = "rtu"  # RTU over a serial line (RS-485 / RS-232)
    rtu_over_tcp = "rtu_over_tcp"  # RTU frames tunnelled through a TCP serial gateway


class Parity(str, Enum):
    none = "none"
    even = "even"
    odd = "odd"


class ConnectionMode(str, Enum):
    keep_open = "keep_open"  # one connection for the life of the agent
    close_after_poll = "close_after_poll"  # devices that only allow short sessions / few sockets


class ModbusSignal(SignalConfigBase):
    table: Table = Field(Table.holding, description="holding | input | coil | discrete_input")
    address: int = Field(ge=0, le=65536, description="Register or bit address (see the device's 'addressing')")
    type: ModbusType | None = Field(
        None, description="Value type; default uint16 for registers, bool for coils and discrete inputs"
    )
    count: int | None = Field(
        None, ge=1, le=125, description="Registers read for string (required) and bcd (1 or 2); fixed-size types imply it"
    )
    bit: int | None = Field(None, ge=0, le=15, description="Bit number (0 = least significant) for type 'bit'")
    byte_order: ByteOrder | None = Field(None, description="Overrides the device's byte_order for this signal")
    scale: float = Field(1.0, description="value = raw * scale + offset")
    offset: float = Field(0.0, description="value = raw * scale + offset")
    poll_group: str = Field("default", description="Name of the poll group (its interval) that reads this signal")

    @model_validator(mode="after")
    def _type_fits(self) -> ModbusSignal:
        t = self.value_type
        if self.table.is_bits:
            if t is not ModbusType.bool:
                raise ValueError(f"type {t.value} does not fit table {self.table.value}: coils and discrete inputs hold single bits (type bool)")
            if self.count not in (None, 1):
                raise ValueError("count must be 1 (or omitted) for coils and discrete inputs")
        else:
            if t is ModbusType.bool:
                raise ValueError(f"type bool is for coils and discrete inputs; use type bit with 'bit: N' for a bit of a {self.table.value} register")
            if t is ModbusType.string and self.count is None:
                raise ValueError("type string needs 'count' (number of registers, 2 characters each)")
            if t is ModbusType.bcd and self.count not in (None, 1, 2):
                raise ValueError(f"type bcd takes 1 or 2 registers, not count {self.count}")
            if t in TYPE_REGISTERS and self.count is not None and self.count != TYPE_REGISTERS[t]:
                raise ValueError(f"type {t.value} takes {TYPE_REGISTERS[t]} register(s), not count {self.count}")
        if (t is ModbusType.bit) != (self.bit is not None):
            raise ValueError("'bit' is required for type bit and only allowed with it")
        return self

    @property
    def value_type(self) -> ModbusType:
        if self.type is not None:
            return self.type
        return ModbusType.bool if self.table.is_bits else ModbusType.uint16

    @property
    def width(self) -> int:
        """Registers (or bits) this signal occupies."""
        t = self.value_type
        if t is ModbusType.bool:
            return 1
        if t in TYPE_REGISTERS:
            return TYPE_REGISTERS[t]
        return self.count or 1


class ModbusUnit(StrictModel):
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit id (slave / device id); 255 or 1 for most TCP devices")
    asset: AssetPath | None = Field(None, description="Asset path of this unit's signals (default: the device's)")
    signals: list[ModbusSignal] = Field(min_length=1, description="Signals read from this unit")


class PollGroup(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="Referenced by signals' poll_group")
    poll_interval_secs: float = Field(gt=0, le=86_400, description="Seconds between reads of this group")


class ModbusDevice(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,62}$", description="Device name (logs, metrics, signal addresses)")
    transport: TransportKind = Field(TransportKind.tcp, description="tcp | rtu | rtu_over_tcp")
    host: str | None = Field(None, description="Host name or IP (tcp, rtu_over_tcp)")
    port: int = Field(502, ge=1, le=65535, description="TCP port (tcp, rtu_over_tcp)")
    serial_port: str | None = Field(None, description="Serial device, e.g. /dev/ttyUSB0 (rtu)")
    baudrate: int = Field(19200, ge=300, le=921_600, description="Serial speed in bit/s (rtu)")
    parity: Parity = Field(Parity.even, description="none | even | odd (rtu); Modbus RTU default is even")
    stop_bits: Literal[1, 2] = Field(1, description="1 or 2 (rtu)")
    byte_size: Literal[7, 8] = Field(8, description="Data bits (rtu)")
    asset: AssetPath | None = Field(None, description="Asset path of this device's signals (default: the connector's)")
    byte_order: ByteOrder = Field(ByteOrder.ABCD, description="Default byte/word order of multi-byte values")
    addressing: Addressing = Field(Addressing.zero_based, description="zero_based | one_based register numbers in this config")
    poll_interval_secs: float = Field(1.0, gt=0, le=86_400, description="Interval of the 'default' poll group")
    poll_groups: list[PollGroup] = Field(default_factory=list, description="Extra poll groups with their own intervals")
    max_registers_per_request: int = Field(125, ge=1, le=125, description="Upper bound of registers per read (125 is the protocol limit)")
    max_bits_per_request: int = Field(2000, ge=1, le=2000, description="Upper bound of coils / discrete inputs per read")
    max_gap_registers: int = Field(16, ge=0, le=124, description="Read across holes of up to this many unused registers to save requests")
    max_gap_bits: int = Field(256, ge=0, le=1999, description="Read across holes of up to this many unused bits")
    request_timeout_secs: float = Field(1.0, gt=0, le=60, description="Time allowed for one response")
    retries: int = Field(0, ge=0, le=5, description="Retries of a timed-out request before it counts as failed")
    pause_between_requests_secs: float = Field(0.0, ge=0, le=10, description="Silence between requests (slow serial gateways)")
    connection: ConnectionMode = Field(ConnectionMode.keep_open, description="keep_open | close_after_poll")
    max_concurrent_requests: int = Field(
        1, ge=1, le=8,
        description="Reads in flight at once, each on its own TCP connection (tcp only; the device must accept that many connections). 1 = one after the other",
    )
    units: list[ModbusUnit] = Field(min_length=1, description="Unit ids polled on this device")

    @model_validator(mode="after")
    def _check_transport(self) -> ModbusDevice:
        if self.transport is TransportKind.rtu:
            if not self.serial_port:
                raise ValueError("transport rtu needs 'serial_port'")
        elif not self.host:
            raise ValueError(f"transport {self.transport.value} needs 'host'")
        if self.max_concurrent_requests > 1:
            if self.transport is not TransportKind.tcp:
                raise ValueError(
                    f"max_concurrent_requests {self.max_concurrent_requests} needs transport tcp: "
                    f"a serial line (and a serial gateway behind {self.transport.value}) carries one request at a time"
                )
            if self.pause_between_requests_secs > 0:
                raise ValueError("max_concurrent_requests > 1 cannot keep pause_between_requests_secs of silence between requests")
        return self

    @field_validator("poll_groups")
    @classmethod
    def _unique_groups(cls, v: list[PollGroup]) -> list[PollGroup]:
        seen = {"default"}
        for i, g in enumerate(v):
            if g.name in seen:
                _fail((i, "name"), f"poll group {g.name!r} is declared twice ('default' is implicit)")
            seen.add(g.name)
        return v

    @field_validator("units")
    @classmethod
    def _check_units(cls, units: list[ModbusUnit], info: ValidationInfo) -> list[ModbusUnit]:
        """Per-signal checks that need the device's settings; errors point at the signal's key."""
        d = info.data
        if "addressing" not in d or "max_registers_per_request" not in d:
            return units  # an earlier field failed; its error is reported instead
        addressing = d["addressing"]
        groups = {"default"} | {g.name for g in d.get("poll_groups", [])}
        lo = 1 if addressing is Addressing.one_based else 0
        hi = lo + 65535
        seen_ids: set[int] = set()
        for ui, unit in enumerate(units):
            if unit.unit_id in seen_ids:
                _fail((ui, "unit_id"), f"unit_id {unit.unit_id} is listed twice on this device")
            seen_ids.add(unit.unit_id)
            names: set[str] = set()
            taken: dict[Table, list[tuple[int, int, int | None, str]]] = {}
            for si, s in enumerate(unit.signals):
                loc = (ui, "signals", si)
                if s.name in names:
                    _fail((*loc, "name"), f"signal name {s.name!r} is used twice in unit {unit.unit_id}")
                names.add(s.name)
                if s.poll_group not in groups:
                    _fail((*loc, "poll_group"), f"unknown poll group {s.poll_group!r}; declared: {', '.join(sorted(groups))}")
                end = s.address + s.width - 1
                if s.address < lo or end > hi:
                    _fail(
                        (*loc, "address"),
                        f"address {s.address}..{end} is out of range {lo}..{hi} ({addressing.value} addressing)",
                    )
                if not s.table.is_bits and s.width > d["max_registers_per_request"]:
                    _fail((*loc, "count"), f"{s.width} registers exceed max_registers_per_request {d['max_registers_per_request']}")
                for a0, a1, bit, other in taken.get(s.table, []):
                    same_reg_other_bit = bit is not None and s.bit is not None and bit != s.bit
                    if s.address <= a1 and a0 <= end and not same_reg_other_bit:
                        _fail(
                            (*loc, "address"),
                            f"{s.table.value} addresses {s.address}..{end} overlap signal {other!r} ({a0}..{a1}) in unit {unit.unit_id}",
                        )
                taken.setdefault(s.table, []).append((s.address, end, s.bit, s.name))
        return units

    def group_intervals(self) -> dict[str, float]:
        out = {"default": self.poll_interval_secs}
        out.update({g.name: g.poll_interval_secs for g in self.poll_groups})
        return out

    def endpoint(self) -> str:
        if self.transport is TransportKind.rtu:
            return f"{self.serial_port}@{self.baudrate}"
        return f"{self.host}:{self.port}"


class ModbusConfig(ConnectorConfigBase):
    """Modbus TCP / RTU / RTU-over-TCP devices, read-only. One supervised unit per device."""

    type: Literal["modbus"]
    devices: list[ModbusDevice] = Field(min_length=1, description="Devices (PLCs, meters, serial gateways) polled by this connector")

    @model_validator(mode="after")
    def _unique_devices(self) -> ModbusConfig:
        names: set[str] = set()
        keys: dict[str, str] = {}
        for di, d in enumerate(self.devices):
            if d.name in names:
                _fail(("devices", di, "name"), f"device name {d.name!r} is used twice")
            names.add(d.name)
            for ui, u in enumerate(d.units):
                asset = u.asset or d.asset or self.asset
                for si, s in enumerate(u.signals):
                    key = f"{s.asset or asset}/{s.name}"
                    here = f"device {d.name} unit {u.unit_id}"
                    if key in keys and keys[key] != here:
                        _fail(("devices", di, "units", ui, "signals", si, "name"), f"signal {key!r} is also declared on {keys[key]}; give it another name or asset")
                    keys[key] = here
        return self

    def signal_configs(self) -> list[SignalConfigBase]:
        return [s for d in self.devices for u in d.units for s in u.signals]
