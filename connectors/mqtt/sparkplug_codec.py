"""A small hand-written codec for the Sparkplug B ``Payload`` protobuf message.

Why hand-written rather than ``protoc`` output: we need only ``Payload`` and ``Metric`` scalar
values; a strict decoder that reports truncation and bad wire types as :class:`SparkplugError`
(quarantined, never a crash) is easier to fuzz than generated code, and no generated file or
``grpcio-tools`` step has to be kept in sync. Unknown fields are skipped as protobuf requires.
Field numbers follow Eclipse Tahu ``sparkplug_b.proto``. Interop is tested against Tahu's own
JavaScript encoder/decoder (``tests/interop/sparkplug``).

Not decoded (skipped, counted by the caller): DataSet, Template, PropertySet, arrays, metadata.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from edge_agent.errors import DecodeError


class SparkplugError(DecodeError):
    reason = "invalid_protobuf"


class SpDataType(IntEnum):
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19


INT32_TYPES = frozenset({1, 2, 3, 5, 6})  # carried in int_value (uint32)
INT64_TYPES = frozenset({4, 7, 8, 13})  # carried in long_value (uint64); UInt32 too, as in Tahu
TEXT_TYPES = frozenset({12, 14, 15})

_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


@dataclass(slots=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None  # ms since the epoch
    datatype: int = 0
    is_null: bool = False
    value: float | int | bool | str | bytes | None = None


@dataclass(slots=True)
class Payload:
    timestamp: int | None = None  # ms since the epoch
    seq: int | None = None
    metrics: list[Metric] | None = None
    uuid: str | None = None


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if i >= end:
            raise SparkplugError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift >= 70:
            raise SparkplugError("varint too long")


def _skip(buf: bytes, i: int, end: int, wt: int) -> int:
    if wt == 0:
        return _varint(buf, i, end)[1]
    if wt == 1:
        i += 8
    elif wt == 2:
        n, i = _varint(buf, i, end)
        i += n
    elif wt == 5:
        i += 4
    else:
        raise SparkplugError(f"unsupported wire type {wt}")
    if i > end:
        raise SparkplugError("truncated field")
    return i


def _text(buf: bytes, i: int, j: int) -> str:
    try:
        return buf[i:j].decode("utf-8")
    except UnicodeDecodeError:
        raise SparkplugError("string field is not UTF-8") from None


def _metric(buf: bytes, i: int, end: int) -> Metric:
    m = Metric()
    raw_int = raw_long = None
    while i < end:
        key, i = _varint(buf, i, end)
        fn, wt = key >> 3, key & 7
        if fn == 1 and wt == 2:
            n, i = _varint(buf, i, end)
            if i + n > end:
                raise SparkplugError("truncated metric name")
            m.name = _text(buf, i, i + n)
            i += n
        elif fn == 2 and wt == 0:
            m.alias, i = _varint(buf, i, end)
        elif fn == 3 and wt == 0:
            m.timestamp, i = _varint(buf, i, end)
        elif fn == 4 and wt == 0:
            m.datatype, i = _varint(buf, i, end)
        elif fn == 7 and wt == 0:
            v, i = _varint(buf, i, end)
            m.is_null = bool(v)
        elif fn == 10 and wt == 0:
            raw_int, i = _varint(buf, i, end)
        elif fn == 11 and wt == 0:
            raw_long, i = _varint(buf, i, end)
        elif fn == 12 and wt == 5:
            if i + 4 > end:
                raise SparkplugError("truncated float")
            m.value = _F32.unpack_from(buf, i)[0]
            i += 4
        elif fn == 13 and wt == 1:
            if i + 8 > end:
                raise SparkplugError("truncated double")
            m.value = _F64.unpack_from(buf, i)[0]
            i += 8
        elif fn == 14 and wt == 0:
            v, i = _varint(buf, i, end)
            m.value = bool(v)
        elif fn in (15, 16) and wt == 2:
            n, i = _varint(buf, i, end)
            if i + n > end:
                raise SparkplugError("truncated bytes")
            m.value = _text(buf, i, i + n) if fn == 15 else bytes(buf[i:i + n])
            i += n
        else:
            i = _skip(buf, i, end, wt)
    if i != end:
        raise SparkplugError("metric overruns its length")
    dt = m.datatype
    if raw_int is not None:
        v = raw_int & 0xFFFFFFFF
        if dt in (1, 2, 3):  # signed: two's complement in 32 bits (or in the type's own width)
            if v >= 0x80000000:
                v -= 0x100000000
            elif dt == 1 and 0x7F < v <= 0xFF:
                v -= 0x100
            elif dt == 2 and 0x7FFF < v <= 0xFFFF:
                v -= 0x10000
        m.value = v
    elif raw_long is not None:
        v = raw_long & 0xFFFFFFFFFFFFFFFF
        if dt == 4 and v >= 0x8000000000000000:
            v -= 0x10000000000000000
        m.value = v
    return m


def decode_payload(buf: bytes) -> Payload:
    """Decode a Sparkplug B payload; raises :class:`SparkplugError` on malformed input."""
    p = Payload(metrics=[])
    i, end = 0, len(buf)
    metrics = p.metrics
    while i < end:
        key, i = _varint(buf, i, end)
        fn, wt = key >> 3, key & 7
        if fn == 2 and wt == 2:
            n, i = _varint(buf, i, end)
            if i + n > end:
                raise SparkplugError("truncated metric")
            metrics.append(_metric(buf, i, i + n))
            i += n
        elif fn == 1 and wt == 0:
            p.timestamp, i = _varint(buf, i, end)
        elif fn == 3 and wt == 0:
            p.seq, i = _varint(buf, i, end)
        elif fn == 4 and wt == 2:
            n, i = _varint(buf, i, end)
            if i + n > end:
                raise SparkplugError("truncated uuid")
            p.uuid = _text(buf, i, i + n)
            i += n
        elif fn == 0:
            raise SparkplugError("field number 0")
        else:
            i = _skip(buf, i, end, wt)
    return p


# ----------------------------------------------------------------------------- encoding
def _enc_varint(v: int, out: bytearray) -> None:
    v &= 0xFFFFFFFFFFFFFFFF
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _enc_key(fn: int, wt: int, out: bytearray) -> None:
    _enc_varint((fn << 3) | wt, out)


def _enc_bytes(fn: int, data: bytes, out: bytearray) -> None:
    _enc_key(fn, 2, out)
    _enc_varint(len(data), out)
    out += data


def encode_metric(m: Metric) -> bytes:
    out = bytearray()
    if m.name is not None:
        _enc_bytes(1, m.name.encode("utf-8"), out)
    if m.alias is not None:
        _enc_key(2, 0, out)
        _enc_varint(m.alias, out)
    if m.timestamp is not None:
        _enc_key(3, 0, out)
        _enc_varint(m.timestamp, out)
    _enc_key(4, 0, out)
    _enc_varint(m.datatype, out)
    dt, v = m.datatype, m.value
    if m.is_null or v is None:
        _enc_key(7, 0, out)
        _enc_varint(1, out)
    elif dt in INT32_TYPES:
        _enc_key(10, 0, out)
        _enc_varint(int(v) & 0xFFFFFFFF, out)
    elif dt in INT64_TYPES:
        _enc_key(11, 0, out)
        _enc_varint(int(v), out)
    elif dt == SpDataType.Float:
        _enc_key(12, 5, out)
        out += _F32.pack(float(v))
    elif dt == SpDataType.Double:
        _enc_key(13, 1, out)
        out += _F64.pack(float(v))
    elif dt == SpDataType.Boolean:
        _enc_key(14, 0, out)
        _enc_varint(1 if v else 0, out)
    elif dt in TEXT_TYPES:
        _enc_bytes(15, str(v).encode("utf-8"), out)
    elif dt == SpDataType.Bytes:
        _enc_bytes(16, bytes(v), out)
    else:
        raise ValueError(f"cannot encode Sparkplug datatype {dt}")
    return bytes(out)


def encode_payload(timestamp: int | None, seq: int | None, metrics: list[Metric]) -> bytes:
    out = bytearray()
    if timestamp is not None:
        _enc_key(1, 0, out)
        _enc_varint(timestamp, out)
    for m in metrics:
        _enc_bytes(2, encode_metric(m), out)
    if seq is not None:
        _enc_key(3, 0, out)
        _enc_varint(seq, out)
    return bytes(out)
