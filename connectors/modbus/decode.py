"""Vectorised decoding of whole Modbus register / bit blocks with numpy.

A :class:`BlockDecoder` is built once per read block (at connect time) from the signals it
covers: signals are grouped by (type, byte order, width) and each group keeps an index matrix
into the block, so one poll decodes every value of a group with a handful of array operations
instead of a Python loop per value. Numeric groups gather their bytes from the block's
big-endian wire image in the value's byte order (one fancy index, or a plain view when the
values are back to back in ABCD order) and reinterpret them as the big-endian type.

Byte orders name the bytes of a value as they come off the wire, ``A`` = most significant:
``ABCD`` big endian (Modbus standard), ``DCBA`` little endian, ``BADC`` bytes swapped inside
each word, ``CDAB`` words swapped. For 16-bit values ``CDAB`` equals ``ABCD`` and ``DCBA``
equals ``BADC``. Strings only honour the byte swap inside words (``BADC`` / ``DCBA``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from connectors.modbus.config import ByteOrder, ModbusType
from dataset_builder.format import Quality

_BE_DTYPE = {
    ModbusType.int16: ">i2",
    ModbusType.uint16: ">u2",
    ModbusType.int32: ">i4",
    ModbusType.uint32: ">u4",
    ModbusType.int64: ">i8",
    ModbusType.uint64: ">u8",
    ModbusType.float32: ">f4",
    ModbusType.float64: ">f8",
}
_WORD_SWAP = (ByteOrder.CDAB, ByteOrder.DCBA)
_BYTE_SWAP = (ByteOrder.BADC, ByteOrder.DCBA)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How to decode one signal inside a block."""

    offset: int  # registers (or bits) from the block start
    type: ModbusType
    width: int = 1
    byte_order: ByteOrder = ByteOrder.ABCD
    bit: int | None = None
    scale: float = 1.0
    value_offset: float = 0.0


def canonical_words(words: np.ndarray, order: ByteOrder, *, swap_words: bool = True) -> np.ndarray:
    """Reorder a (n, k) uint16 matrix into big-endian (ABCD) word order."""
    w = words
    if swap_words and order in _WORD_SWAP:
        w = w[:, ::-1]
    if order in _BYTE_SWAP:
        w = (w >> 8) | (w << 8)
    return np.ascontiguousarray(w, dtype=np.uint16)


def _byte_order_perm(width: int, order: ByteOrder) -> np.ndarray:
    """Positions of a value's bytes (most significant first) in its ``2 * width`` wire bytes."""
    words = np.arange(width, dtype=np.intp)
    if order in _WORD_SWAP:
        words = words[::-1]
    inner = np.array([1, 0] if order in _BYTE_SWAP else [0, 1], dtype=np.intp)
    return (2 * words[:, None] + inner[None, :]).reshape(-1)


def _bcd(words: np.ndarray, order: ByteOrder) -> tuple[np.ndarray, np.ndarray]:
    """Packed BCD, 4 digits per word. Returns (values, ok) where ok is False for a nibble > 9."""
    w = canonical_words(words, order).astype(np.uint64)
    k = w.shape[1]
    raw = np.zeros(w.shape[0], dtype=np.uint64)
    for j in range(k):  # k is 1 or 2
        raw = (raw << np.uint64(16)) | w[:, j]
    shifts = np.arange(4 * k, dtype=np.uint64) * np.uint64(4)
    nib = (raw[:, None] >> shifts[None, :]) & np.uint64(0xF)
    ok = (nib <= 9).all(axis=1)
    vals = (nib.astype(np.float64) * (10.0 ** np.arange(4 * k))[None, :]).sum(axis=1)
    return vals, ok


def _strings(words: np.ndarray, order: ByteOrder) -> list[str]:
    be = canonical_words(words, order, swap_words=False).astype(">u2")
    out = []
    for row in be:  # strings are rare and short; one decode per string
        out.append(row.tobytes().split(b"\x00", 1)[0].decode("latin-1").rstrip(" "))
    return out


class BlockDecoder:
    """Decodes one block into (value, valid, quality, text) arrays ordered like ``fields``."""

    def __init__(self, fields: list[FieldSpec], *, bits: bool) -> None:
        self.n = len(fields)
        self.bits = bits
        self.has_text = any(f.type is ModbusType.string for f in fields)
        self.can_fail = any(f.type is ModbusType.bcd for f in fields)  # may set a bad quality
        self.scale = np.array([f.scale for f in fields], dtype=np.float64)
        self.value_offset = np.array([f.value_offset for f in fields], dtype=np.float64)
        self.needs_scale = bool((self.scale != 1.0).any() or (self.value_offset != 0.0).any())
        # groups: (type, order, width, bit) -> rows; numeric groups read their bytes straight
        # from the big-endian wire image of the block (one gather, or a plain view when the
        # fields are back to back in ABCD order), the others work on the register values
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(fields):
            key = (f.type, f.byte_order, f.width, f.bit if f.type is ModbusType.bit else None)
            groups.setdefault(key, []).append(i)
        self.groups = []
        for (t, order, width, bit), rows in groups.items():
            r = np.asarray(rows, dtype=np.intp)
            offs = np.array([fields[i].offset for i in rows], dtype=np.intp)
            idx = offs[:, None] + np.arange(width, dtype=np.intp)[None, :]
            dest = slice(int(r[0]), int(r[-1]) + 1) if (np.diff(r) == 1).all() else r  # a slice assigns faster
            num = None
            if not bits and t in _BE_DTYPE:
                perm = _byte_order_perm(width, order)
                n = len(rows)
                if (perm == np.arange(2 * width)).all() and (offs == offs[0] + width * np.arange(n)).all():
                    num = (int(offs[0]) * 2, n, None)  # back to back, ABCD: a view of the wire bytes
                else:
                    num = (0, n, (2 * offs)[:, None] + perm[None, :])
            self.groups.append((t, order, bit, dest, offs, idx, num))

    def decode(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None] | None]:
        """``data``: uint16 registers (or bools for bit tables) of the whole block."""
        value = np.empty(self.n, dtype=np.float64)
        valid = np.ones(self.n, dtype=bool)
        quality = np.zeros(self.n, dtype=np.uint32)
        text = self.decode_into(data, value, valid, quality)
        return value, valid, quality, text

    def decode_into(self, data: np.ndarray, value: np.ndarray, valid: np.ndarray, quality: np.ndarray) -> list[str | None] | None:
        """Decode into ``n``-long views of a cycle's arrays (``valid`` preset True, ``quality``
        preset 0): the connector builds one chunk per cycle without a copy per block. Returns
        the text values (or None when the block has no strings)."""
        text: list[str | None] | None = [None] * self.n if self.has_text else None
        wire = None
        for t, order, bit, rows, offs, idx, num in self.groups:
            if num is not None:
                if wire is None:  # the block as big-endian bytes, as it came off the wire
                    wire = data.astype(">u2", copy=False).view(np.uint8)
                start, n, bidx = num
                if bidx is None:
                    value[rows] = np.frombuffer(wire, dtype=_BE_DTYPE[t], count=n, offset=start)
                else:
                    value[rows] = wire[bidx].view(_BE_DTYPE[t]).reshape(-1)
            elif self.bits:
                value[rows] = data[offs]
            elif t is ModbusType.bit:
                value[rows] = (data[offs] >> np.uint16(bit)) & np.uint16(1)
            elif t is ModbusType.bcd:
                v, ok = _bcd(data[idx], order)
                value[rows] = v
                bad = np.arange(self.n)[rows][~ok]
                valid[bad] = False
                quality[bad] = Quality.BAD_DECODING_ERROR
            elif t is ModbusType.string:
                value[rows] = np.nan
                valid[rows] = False
                for r, s in zip(np.arange(self.n)[rows].tolist(), _strings(data[idx], order)):
                    text[r] = s
        if self.needs_scale:
            value *= self.scale
            value += self.value_offset
        return text
