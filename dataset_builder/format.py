"""The axedge dataset format: schemas, quality codes and layout constants (format version 1).

The full written specification is ``docs/dataset-format.md``. This module is its executable
half: the writer, the reader helpers and the agent all take their schemas from here.

Two schemas matter:

* :data:`SAMPLE_SCHEMA` is the *input* of the raw writer (and what the agent's durable buffer
  stores): integer signal ids, nanosecond timestamps. It is an internal exchange format.
* :data:`RAW_FILE_SCHEMA` is what lands in the raw Parquet files: the signal key as a
  dictionary column, microsecond UTC timestamps (nanosecond timestamps trip older Spark and
  Athena readers), the value, the text value, and the quality code. ``asset`` and ``date`` are
  Hive partition directories, not columns in the files.
"""

from __future__ import annotations

import re
from enum import IntEnum

import numpy as np
import pyarrow as pa

FORMAT_NAME = "axedge-dataset"
FORMAT_VERSION = 1

#: Directory names inside a dataset root. Names starting with ``_`` are ignored by
#: ``pyarrow.dataset`` (``ignore_prefixes``) and are not matched by ``**/*.parquet`` globs
#: (staged files end in ``.tmp``), so readers without axedge see only committed data.
META_DIR = "_axedge"
STAGING_DIR = "_staging"
QUARANTINE_DIR = "_quarantine"
RAW_DIR = "raw"

MANIFEST_FILE = "manifest.jsonl"
DATASET_FILE = "dataset.json"
CATALOG_PARQUET = "signals.parquet"
CATALOG_JSON = "signals.json"
STAGED_SUFFIX = ".tmp"
#: Asset partition of rows whose signal id is not in the catalog (signal key ``unknown/<id>``).
UNKNOWN_PARTITION = "_unknown"

TS_NS_UTC = pa.timestamp("ns", tz="UTC")
TS_US_UTC = pa.timestamp("us", tz="UTC")

SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("signal_id", pa.int32(), nullable=False),
        pa.field("source_time", TS_NS_UTC, nullable=False),
        pa.field("server_time", TS_NS_UTC, nullable=True),
        pa.field("receive_time", TS_NS_UTC, nullable=False),
        pa.field("value", pa.float64(), nullable=True),
        pa.field("value_text", pa.string(), nullable=True),
        pa.field("quality", pa.uint32(), nullable=False),
    ],
    metadata={b"axedge.schema": b"samples/1"},
)

RAW_FILE_SCHEMA = pa.schema(
    [
        pa.field("time", TS_US_UTC, nullable=False),
        pa.field("signal", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("value", pa.float64(), nullable=True),
        pa.field("value_text", pa.string(), nullable=True),
        pa.field("quality", pa.uint32(), nullable=False),
        pa.field("server_time", TS_US_UTC, nullable=True),
        pa.field("receive_time", TS_US_UTC, nullable=False),
    ],
    metadata={b"axedge.format": f"{FORMAT_NAME}/{FORMAT_VERSION}".encode(), b"axedge.layer": b"raw"},
)


class DatasetError(Exception):
    """The dataset directory is unusable (unwritable, full, corrupt manifest, missing file).

    ``path`` names the file or directory at fault and ``hint`` says what to do. ``transient`` is
    True when retrying later may succeed (disk momentarily full, I/O error while writing); the
    rows in flight were not committed and are replayed by the caller. ``dataset_builder`` does
    not import ``edge_agent``; the agent's sink translates this into its own error tree.
    """

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.hint = hint
        self.transient = transient

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class Quality(IntEnum):
    """Quality codes are OPC UA StatusCodes (uint32). The top two bits give the severity:
    ``00`` good, ``01`` uncertain, ``10`` bad. Modbus and MQTT failures map onto the same codes so
    one column means the same thing whatever the protocol."""

    GOOD = 0x00000000
    UNCERTAIN = 0x40000000
    UNCERTAIN_LAST_USABLE_VALUE = 0x40900000
    BAD = 0x80000000
    BAD_DECODING_ERROR = 0x80070000
    BAD_TIMEOUT = 0x800A0000
    BAD_COMMUNICATION_ERROR = 0x80050000
    BAD_NO_COMMUNICATION = 0x80310000
    BAD_WAITING_FOR_INITIAL_DATA = 0x80320000
    BAD_OUT_OF_RANGE = 0x803C0000
    BAD_NOT_CONNECTED = 0x808A0000


def severity(code: int) -> str:
    """``good``, ``uncertain`` or ``bad`` for an OPC UA style status code."""
    top = (int(code) >> 30) & 0b11
    return {0: "good", 1: "uncertain"}.get(top, "bad")


_SLUG_BAD = re.compile(r"[^A-Za-z0-9_.\-]+")


def asset_partition_value(asset_path: str) -> str:
    """The Hive partition value for an asset path: ``site/area/line`` -> ``site.area.line``.

    Only ``[A-Za-z0-9_.-]`` survive so the directory name needs no URL escaping in any reader.
    """
    parts = [p for p in asset_path.strip("/").split("/") if p]
    slug = ".".join(_SLUG_BAD.sub("_", p) for p in parts)
    return slug or "_unassigned"


def arrow_from_numpy(values: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A fixed-width Arrow array over a numpy array, zero copy (``valid``: False rows are null).
    ``pa.array`` would copy, and import pandas when it is installed (50 MB of RSS in the agent)."""
    values = np.ascontiguousarray(values)
    if valid is None:
        return pa.Array.from_buffers(type_, values.shape[0], [None, pa.py_buffer(values)])
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    nulls = int(values.shape[0] - np.count_nonzero(valid))
    return pa.Array.from_buffers(type_, values.shape[0], [bitmap, pa.py_buffer(values)], null_count=nulls)


_ZEROS = pa.allocate_buffer(0)


def null_array(n: int, type_: pa.DataType) -> pa.Array:
    """An all-null column (fixed width or string) over slices of one shared, read-only zero
    buffer: ``pa.nulls`` allocates and zeroes 8 bytes a row for a timestamp column (1.2 MB per
    100k-row batch for the two mostly-empty sample columns, 4 MB held by the writer's row groups
    in the core benchmark)."""
    global _ZEROS
    if not (pa.types.is_string(type_) or pa.types.is_timestamp(type_) or pa.types.is_integer(type_)
            or pa.types.is_floating(type_)):
        return pa.nulls(n, type_)
    width = 4 if pa.types.is_string(type_) else type_.bit_width // 8
    size = width * (n + 1)
    if _ZEROS.size < size:
        _ZEROS = pa.py_buffer(bytes(max(size, 2 * _ZEROS.size)))
    zeros = _ZEROS  # one object for the slices (another thread may grow the global meanwhile)
    bitmap = zeros.slice(0, (n + 7) // 8)
    if pa.types.is_string(type_):
        return pa.Array.from_buffers(type_, n, [bitmap, zeros.slice(0, size), zeros.slice(0, 0)], null_count=n)
    return pa.Array.from_buffers(type_, n, [bitmap, zeros.slice(0, width * n)], null_count=n)


# --- Arrow <-> numpy without pandas ------------------------------------------------------------
# ``pa.array``, ``Array.to_numpy`` and ``pc.fill_null`` with a Python scalar import pandas when it
# is installed (pyarrow checks every input for pandas types): 44 MB more RSS in the agent process
# (27 MB anonymous, 18 MB of library pages) and ~0.5 s, for nothing the agent needs. The agent,
# its sinks, processors and models use these instead; ``tests/unit/test_no_pandas.py`` runs an
# agent with every part of the hot path and checks pandas stays out.


def _array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def numpy_values(col: pa.Array | pa.ChunkedArray, dtype) -> np.ndarray:
    """The value buffer of a fixed-width (numeric or timestamp) Arrow array as numpy, zero copy
    for an Array. Null rows hold whatever their slot holds: see :func:`numpy_filled`."""
    col = _array(col)
    dtype = np.dtype(dtype)
    if len(col) == 0:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(col.buffers()[1], dtype=dtype, count=len(col), offset=col.offset * dtype.itemsize)


def numpy_valid(col: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Validity of each row as bools, or None when the column has no nulls."""
    col = _array(col)
    if col.null_count == 0:
        return None
    bits = np.frombuffer(col.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little", count=col.offset + len(col))[col.offset:].astype(bool)


def numpy_filled(col: pa.Array | pa.ChunkedArray, dtype, fill) -> np.ndarray:
    """The values as numpy with null rows set to ``fill`` (a copy only when there are nulls)."""
    values = numpy_values(col, dtype)
    valid = numpy_valid(col)
    if valid is None:
        return values
    out = values.copy()
    out[~valid] = fill
    return out


def arrow_bools(mask: np.ndarray) -> pa.Array:
    """A boolean array over a numpy bool mask (bit-packed; no nulls)."""
    mask = np.asarray(mask, dtype=bool)
    return pa.Array.from_buffers(pa.bool_(), mask.shape[0], [None, pa.py_buffer(np.packbits(mask, bitorder="little"))])


def arrow_strings(values: list[str | None]) -> pa.Array:
    """A string array built from its buffers (``pa.array`` on a list would import pandas)."""
    data = [b"" if v is None else str(v).encode() for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    nulls = sum(v is None for v in values)
    if nulls:
        buffers[0] = pa.py_buffer(np.packbits([v is not None for v in values], bitorder="little"))
    return pa.Array.from_buffers(pa.string(), len(data), buffers, null_count=nulls)
