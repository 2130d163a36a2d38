"""Block decoding against an independent encoder (struct based, in hardware/_modbus_server.py)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.modbus.config import ByteOrder, ModbusType
from connectors.modbus.decode import BlockDecoder, FieldSpec
from dataset_builder.format import Quality
from hardware._modbus_server import encode

ORDERS = list(ByteOrder)
LIMITS = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**53), 2**53),  # exact in float64
    "uint64": (0, 2**53),
}


def decode_one(words, f: FieldSpec):
    v, valid, q, text = BlockDecoder([f], bits=False).decode(np.asarray(words, dtype=np.uint16))
    return v[0], valid[0], q[0], (text[0] if text else None)


def test_known_float32_patterns():
    # 123.456 as float32 is 0x42F6E979: A=42 B=F6 C=E9 D=79
    words = {"ABCD": [0x42F6, 0xE979], "CDAB": [0xE979, 0x42F6], "BADC": [0xF642, 0x79E9], "DCBA": [0x79E9, 0xF642]}
    for order, w in words.items():
        v, *_ = decode_one(w, FieldSpec(0, ModbusType.float32, 2, ByteOrder(order)))
        assert v == pytest.approx(123.456, rel=1e-7), order


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("t", list(LIMITS))
def test_integer_extremes_in_every_order(t, order):
    width = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2}.get(t, 4)
    for x in LIMITS[t]:
        v, valid, q, _ = decode_one(encode(x, t, order.value), FieldSpec(0, ModbusType(t), width, order))
        assert (v, valid, q) == (float(x), True, 0)


@given(
    st.sampled_from(ORDERS),
    st.floats(allow_nan=False, width=32),
    st.floats(allow_nan=False),
    st.integers(-(2**31), 2**31 - 1),
)
def test_mixed_block_property(order, f32, f64, i32):
    words = encode(f32, "float32", order.value) + [0xDEAD] + encode(f64, "float64", order.value) + encode(i32, "int32", order.value)
    fields = [
        FieldSpec(0, ModbusType.float32, 2, order),
        FieldSpec(3, ModbusType.float64, 4, order),
        FieldSpec(7, ModbusType.int32, 2, order),
        FieldSpec(2, ModbusType.uint16, 1, ByteOrder.ABCD),
    ]
    v, valid, q, text = BlockDecoder(fields, bits=False).decode(np.asarray(words, dtype=np.uint16))
    assert v.tolist() == [f32, f64, float(i32), float(0xDEAD)]
    assert valid.all() and not q.any() and text is None


def test_scale_offset_bits_bcd_and_strings():
    words = [0b1010_0000_0000_0101] + encode(1234, "bcd") + encode(87654321, "bcd", count=2) + encode("MOULD-7", "string", count=4) + [0x12AB]
    fields = [
        FieldSpec(0, ModbusType.bit, 1, bit=0),
        FieldSpec(0, ModbusType.bit, 1, bit=1),
        FieldSpec(0, ModbusType.bit, 1, bit=15),
        FieldSpec(1, ModbusType.bcd, 1),
        FieldSpec(2, ModbusType.bcd, 2),
        FieldSpec(4, ModbusType.string, 4),
        FieldSpec(8, ModbusType.bcd, 1),  # 0x12AB: nibbles A and B are not BCD digits
        FieldSpec(1, ModbusType.uint16, 1, scale=0.1, value_offset=-20.0),
    ]
    v, valid, q, text = BlockDecoder(fields, bits=False).decode(np.asarray(words, dtype=np.uint16))
    assert v[:5].tolist() == [1.0, 0.0, 1.0, 1234.0, 87654321.0]
    assert math.isnan(v[5]) and text[5] == "MOULD-7" and not valid[5]
    assert not valid[6] and q[6] == Quality.BAD_DECODING_ERROR
    assert v[7] == pytest.approx(0x1234 * 0.1 - 20.0)
    assert valid.tolist() == [True, True, True, True, True, False, False, True]


def test_byte_swapped_string():
    words = encode("AB12", "string", "BADC", count=2)
    assert words == [0x4241, 0x3231]
    *_, text = decode_one(words, FieldSpec(0, ModbusType.string, 2, ByteOrder.BADC))
    assert text == "AB12"


def test_bit_tables():
    bits = np.array([1, 0, 0, 1, 1], dtype=bool)
    v, valid, q, _ = BlockDecoder([FieldSpec(3, ModbusType.bool), FieldSpec(1, ModbusType.bool)], bits=True).decode(bits)
    assert v.tolist() == [1.0, 0.0] and valid.all()


@given(
    st.sampled_from(ORDERS),
    st.lists(st.floats(allow_nan=False, width=32), min_size=2, max_size=20),
    st.integers(0, 3),
)
def test_runs_of_one_type_back_to_back_or_with_holes(order, xs, hole):
    # back to back in ABCD reads a view of the wire bytes; holes or other orders gather them
    words, fields = [], []
    for x in xs:
        fields.append(FieldSpec(len(words), ModbusType.float32, 2, order))
        words += encode(x, "float32", order.value) + [0xBEEF] * hole
    for data in (np.asarray(words, dtype=np.uint16), np.asarray(words, dtype=">u2")):  # pymodbus / wire arrays
        v, valid, q, _ = BlockDecoder(fields, bits=False).decode(data)
        assert v.tolist() == [float(np.float32(x)) for x in xs] and valid.all() and not q.any()
