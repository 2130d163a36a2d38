"""The raw dataset writer: SAMPLE_SCHEMA batches in, committed Hive-partitioned Parquet out.

Layout (see ``docs/dataset-format.md``)::

    <root>/raw/asset=<asset partition>/date=YYYY-MM-DD/part-<utc ts>-<uuid8>.parquet
    <root>/_staging/part-....parquet.tmp         files being written (never read)
    <root>/_quarantine/                           staged files of commits that never happened
    <root>/_axedge/manifest.jsonl                 one line per commit: the commit point
    <root>/_axedge/dataset.json, signals.parquet, signals.json

Rows are routed to (asset partition, UTC date of source_time) with numpy: a lookup array maps
signal id -> partition, one stable radix sort groups the rows (a batch already grouped is
sliced), and each group is gathered straight into its open file's row buffer. All open files
form one commit group; a commit records, per buffer id, the contiguous range of batch sequence
numbers it holds, so :meth:`RawDatasetWriter.open` returns watermarks and replays of committed
batches are skipped (exactly once).

Rows wait in per-file numpy segments until a row group is written (``row_group_rows`` per file,
or earlier when all buffers together exceed ``max_buffer_bytes``, largest first). Row groups are
Parquet-encoded on ``encode_threads`` worker threads (each file pinned to one, so its row groups
stay in order) while the next batch is routed; at most ``encode_threads + 1`` row groups wait, so
the writer's memory is bounded by ``max_buffer_bytes`` plus those row groups. An encoding error
surfaces from the next :meth:`write` or from :meth:`commit`; :meth:`abort` waits for the encoder.
The write path never imports pandas (``to_numpy`` and ``pa.array`` would, when it is installed).

Not thread-safe: call it from one thread at a time (the agent calls it from worker threads, one
call at a time); the encoder threads are internal.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_builder import catalog as catalog_mod
from dataset_builder import manifest as mf
from dataset_builder.format import (
    DATASET_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    META_DIR,
    QUARANTINE_DIR,
    RAW_DIR,
    RAW_FILE_SCHEMA,
    SAMPLE_SCHEMA,
    STAGING_DIR,
    TS_US_UTC,
    UNKNOWN_PARTITION,
    DatasetError,
    arrow_from_numpy,
    arrow_strings,
    asset_partition_value,
    null_array,
    numpy_valid,
    numpy_values,
)

log = logging.getLogger("axedge.dataset")

NS_PER_DAY = 86_400 * 1_000_000_000
_DICT_TYPE = RAW_FILE_SCHEMA.field("signal").type
_STATS_COLUMNS = [c for c in RAW_FILE_SCHEMA.names if c != "signal"]
_SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


@dataclass
class WriterStats:
    """Counters for the agent's metrics."""

    rows_written: int = 0  # accepted into the pending commit group
    rows_committed: int = 0
    files_committed: int = 0
    commits: int = 0
    unknown_signal_rows: int = 0  # rows whose signal id was not in the catalog (kept as unknown/<id>)
    skipped_batches: int = 0  # replays of already committed seqs
    skipped_rows: int = 0
    aborted_rows: int = 0
    quarantined_files: int = 0
    rolled_forward_files: int = 0
    torn_manifest_tails: int = 0


class _Rows:
    """Rows buffered for the next row group of one file, in owned numpy columns: memory held is
    exactly what is counted (slices of the caller's batches would keep whole batches alive).

    Each append gathers into new arrays of exactly its size (a segment): no growing and copying,
    and the row group is written as chunked columns."""

    _NUMERIC = (("time", np.int64), ("code", np.int32), ("value", np.float64), ("quality", np.uint32),
                ("recv", np.int64))

    def __init__(self) -> None:
        self.n = 0
        self.segments: list[dict[str, np.ndarray | None]] = []
        self.text: list[tuple[int, pa.Array]] = []  # (row offset, values) for non-null stretches
        self.server: list[tuple[int, pa.Array]] = []

    def append(self, src: _Batch, sel: slice | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Copy the ``n`` rows ``sel`` of ``src`` (a slice, or row positions) into a new segment,
        gathering straight into place (one copy per column); returns the new rows' times (us)
        and signal ids."""
        gather = not isinstance(sel, slice)
        seg: dict[str, np.ndarray | None] = {}
        for name, dtype in self._NUMERIC:
            if gather:
                out = np.empty(n, dtype=dtype)
                np.take(getattr(src, name), sel, out=out, mode="clip")  # positions are valid: no checks
            else:
                out = getattr(src, name)[sel].copy()
            seg[name] = out
        np.floor_divide(seg["time"], 1000, out=seg["time"])  # ns -> us
        np.floor_divide(seg["recv"], 1000, out=seg["recv"])
        seg["valid"] = None
        if src.valid is not None:
            valid = src.valid[sel]
            if not valid.all():
                seg["valid"] = valid
        a = self.n
        for name in ("text", "server"):
            arr = getattr(src, name)
            if arr is not None:
                piece = arr.slice(sel.start, n) if not gather else arr.take(arrow_from_numpy(sel, pa.int64()))
                if piece.null_count < n:
                    getattr(self, name).append((a, pa.concat_arrays([piece])))  # an owned copy
        self.segments.append(seg)
        self.n = a + n
        return seg["time"], src.sid[sel]

    def to_table(self, dictionary: pa.Array, schema: pa.Schema) -> pa.Table:
        """The buffered rows as a table over the segments (zero copy; built without ``pa.array``,
        which would import pandas when it is installed)."""
        n = self.n

        def col(name: str, type_: pa.DataType) -> pa.ChunkedArray:
            return pa.chunked_array([arrow_from_numpy(g[name], type_, g["valid"] if name == "value" else None)
                                     for g in self.segments], type_)

        codes = col("code", pa.int32())
        signal = pa.chunked_array([pa.DictionaryArray.from_arrays(c, dictionary, safe=False) for c in codes.chunks],
                                  schema.field("signal").type)
        return pa.Table.from_arrays(
            [
                col("time", TS_US_UTC),
                signal,
                col("value", pa.float64()),
                _sparse(self.text, n, pa.string()),
                col("quality", pa.uint32()),
                _sparse(self.server, n, TS_US_UTC),
                col("recv", TS_US_UTC),
            ],
            schema=schema,
        )


def _sparse(parts: list[tuple[int, pa.Array]], n: int, type_: pa.DataType) -> pa.Array:
    """A column of ``n`` rows that is null except for the given stretches."""
    if not parts:
        return null_array(n, type_)  # no allocation: slices of a shared zero buffer
    chunks, pos = [], 0
    for off, arr in parts:
        if off > pos:
            chunks.append(null_array(off - pos, type_))
        chunks.append(arr)
        pos = off + len(arr)
    if pos < n:
        chunks.append(null_array(n - pos, type_))
    return pa.concat_arrays(chunks)


@dataclass
class _File:
    """One staged Parquet file of the pending commit group."""

    asset: str
    date: str
    rel: str  # final path relative to root
    staged: Path
    writer: pq.ParquetWriter | None = None
    sink: pa.NativeFile | None = None
    buf: _Rows = field(default_factory=_Rows)
    buffered_rows: int = 0
    buffered_bytes: int = 0
    rows: int = 0  # written to the file (flushed)
    written_bytes: int = 0
    flushed_nbytes: int = 0  # uncompressed Arrow bytes flushed (for the compression ratio)
    time_min: int = 1 << 62
    time_max: int = -(1 << 62)
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # signal ids present
    closed: bool = False
    encoding: list[Future] = field(default_factory=list)  # row groups handed to the encoder thread
    lane: int = 0  # the encoder thread that writes this file (one per file keeps its row groups in order)

    @property
    def total_rows(self) -> int:
        return self.rows + self.buffered_rows

    def est_bytes(self) -> float:
        ratio = self.written_bytes / self.flushed_nbytes if self.flushed_nbytes else 1.0
        return self.written_bytes + self.buffered_bytes * ratio


class RawDatasetWriter:
    """Writes the raw layer of an axedge dataset with crash-safe, idempotent commits.

    ``max_file_rows`` / ``max_file_bytes`` close a file (a new one continues in the same commit
    group and :meth:`commit_due` turns True); ``max_file_age_secs`` bounds how long a written batch
    waits for its commit. ``clock`` (monotonic seconds) is injectable for tests. The constructor
    does no I/O; :meth:`open` does.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_file_rows: int = 5_000_000,
        max_file_bytes: int = 128 << 20,
        max_file_age_secs: float = 60.0,
        compression: str = "zstd",
        compression_level: int | None = None,
        provenance: dict | None = None,
        clock: Callable[[], float] = time.monotonic,
        row_group_rows: int = 1 << 18,
        max_buffer_bytes: int = 32 << 20,
        encode_threads: int = 1,
    ) -> None:
        if max_file_rows < 1 or max_file_bytes < 1 or max_file_age_secs <= 0:
            raise ValueError("max_file_rows, max_file_bytes and max_file_age_secs must be positive")
        self.root = Path(root)
        self.max_file_rows = int(max_file_rows)
        self.max_file_bytes = int(max_file_bytes)
        self.max_file_age_secs = float(max_file_age_secs)
        self.compression = None if compression in (None, "none") else compression
        self.compression_level = compression_level
        self.provenance = dict(provenance or {})
        self._clock = clock
        self._rg_rows = max(1, min(int(row_group_rows), self.max_file_rows))
        self.max_buffer_bytes = int(max_buffer_bytes)
        # Parquet encoding (which releases the GIL) runs on worker threads, so routing the next
        # batch overlaps encoding the last row groups. Each file is pinned to one thread, which
        # keeps its row groups in order. 0: encode inline. One is the default: on 2 cores a second
        # one measured no faster (the core and the router use the other core) and held ~10 MB more.
        self.encode_threads = max(0, int(encode_threads))
        self._encoders: list[ThreadPoolExecutor] = []
        self._encoding: deque[Future] = deque()
        self.stats = WriterStats()
        #: what open() found and repaired (for logs and ``axedge dataset describe``)
        self.recovery: dict[str, Any] = {}

        self._opened = False
        self._watermarks: dict[str, int] = {}
        # routing: signal id -> partition index / code in that partition's dictionary
        self._part_of = np.zeros(0, dtype=np.int32)
        self._code_of = np.zeros(0, dtype=np.int32)
        self._partitions: list[str] = []
        self._part_index: dict[str, int] = {}
        self._keys: list[list[str]] = []  # per partition: signal keys (dictionary values)
        self._dict_cache: dict[int, pa.Array] = {}
        self._unknown_ids: set[int] = set()
        # catalog rows by key: stored (on disk) and current (to write at next commit)
        self._catalog_rows: dict[str, dict[str, Any]] = {}
        self._catalog_dirty = False
        # the pending commit group
        self._open_files: dict[tuple[str, int], _File] = {}  # (asset partition, day) -> file
        self._files: list[_File] = []
        self._pending_seqs: dict[str, list[int]] = {}
        self._first_write_at: float | None = None
        self._buffered_total = 0
        self._unfinished: list[tuple[Path, Path]] = []  # committed, rename still to do
        self._known_dirs: set[Path] = set()
        self._outcome_unknown = False  # a manifest append failed half-way: only open() can tell
        self._schema = RAW_FILE_SCHEMA

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> dict[str, int]:
        """Create the directories, check they are writable, recover; return the watermarks."""
        if self._files or self._pending_seqs:
            self.abort()
        self._outcome_unknown = False
        for d in (self.root, self._raw, self._meta, self._staging, self._quarantine):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._unusable(d, exc) from exc
        probe = self._staging / f".probe-{uuid.uuid4().hex[:8]}"
        try:
            with open(probe, "wb") as f:
                f.write(b"axedge")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as exc:
            raise self._unusable(self._staging, exc) from exc
        self._write_dataset_json()
        self._recover()
        stored = {r["key"]: r for r in catalog_mod.load(self.root)}
        self._catalog_dirty = any(stored.get(k) != r for k, r in self._catalog_rows.items())
        self._catalog_rows = {**stored, **self._catalog_rows}
        self._schema = RAW_FILE_SCHEMA.with_metadata(
            {**RAW_FILE_SCHEMA.metadata, b"axedge.provenance": json.dumps(self.provenance, sort_keys=True).encode()}
        )
        self._opened = True
        return dict(self._watermarks)

    def close(self) -> None:
        """Commit what is pending and release files. Uncommitted data is dropped on failure."""
        if not self._opened:
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise
        finally:
            self._opened = False
            for e in self._encoders:
                e.shutdown(wait=True)
            self._encoders = []

    # ------------------------------------------------------------------ catalog

    def set_catalog(self, records: list[dict]) -> None:
        """Install the signal catalog (agent records with run-local ``id``). Written at commit."""
        try:
            for f in self._files:  # buffered dictionary codes refer to the current catalog
                self._flush(f)
        except OSError as exc:
            raise self._io_error(self._staging, exc, "writing a staged file") from exc
        max_id = max((int(r["id"]) for r in records), default=-1)
        part_of = np.full(max_id + 1, -1, dtype=np.int32)
        code_of = np.zeros(max_id + 1, dtype=np.int32)
        partitions: list[str] = []
        part_index: dict[str, int] = {}
        keys: list[list[str]] = []
        for r in sorted(records, key=lambda r: int(r["id"])):
            part = r.get("asset_partition") or asset_partition_value(r["asset"])
            p = part_index.get(part)
            if p is None:
                p = part_index[part] = len(partitions)
                partitions.append(part)
                keys.append([])
            part_of[int(r["id"])] = p
            code_of[int(r["id"])] = len(keys[p])
            keys[p].append(r["key"])
            row = catalog_mod.normalize({**r, "asset_partition": part})
            if self._catalog_rows.get(r["key"]) != row:
                self._catalog_rows[r["key"]] = row
                self._catalog_dirty = True
        self._part_of, self._code_of = part_of, code_of
        self._partitions, self._part_index, self._keys = partitions, part_index, keys
        self._dict_cache.clear()
        # Ids still missing from the new catalog stay unknown.
        still = [i for i in self._unknown_ids if i > max_id or part_of[i] < 0]
        self._unknown_ids = set()
        self._register_unknown(np.array(sorted(still), dtype=np.int64))

    # ------------------------------------------------------------------ writing

    def write(self, buffer_id: str, seq: int, batch: pa.RecordBatch) -> None:
        """Add one batch (SAMPLE_SCHEMA). Batches with ``seq`` at or below the committed watermark
        of ``buffer_id`` are replays and are skipped."""
        self._check_open()
        seq = int(seq)
        mark = self._watermarks.get(buffer_id)
        if mark is not None and seq <= mark:
            self.stats.skipped_batches += 1
            self.stats.skipped_rows += batch.num_rows
            return
        rng = self._pending_seqs.get(buffer_id)
        if rng is not None and seq <= rng[1]:
            raise ValueError(f"seq {seq} of buffer {buffer_id!r} is not above the pending seq {rng[1]}")
        if batch.num_rows:
            try:
                self._route(batch)
            except OSError as exc:
                raise self._io_error(self._staging, exc, "writing a staged file") from exc
        if rng is None:
            self._pending_seqs[buffer_id] = [seq, seq]
        else:
            rng[1] = seq
        if self._first_write_at is None:
            self._first_write_at = self._clock()
        self.stats.rows_written += batch.num_rows

    def commit_due(self) -> bool:
        """True when a file reached its row or byte limit or the oldest pending write is too old."""
        if any(f.closed for f in self._files):
            return True
        return self._first_write_at is not None and self._clock() - self._first_write_at >= self.max_file_age_secs

    def until_commit(self) -> float | None:
        """Seconds until the age limit makes a commit due (None: nothing pending)."""
        if self._first_write_at is None:
            return None
        if any(f.closed for f in self._files):
            return 0.0
        return max(0.0, self._first_write_at + self.max_file_age_secs - self._clock())

    # ------------------------------------------------------------------ routing

    def _route(self, batch: pa.RecordBatch) -> None:
        """Group the rows by (asset partition, UTC day) and queue each group on its file. One
        stable radix argsort per batch, then every group is gathered straight into its file's
        row buffer; a batch that is already grouped (one partition, or sorted by it) is sliced."""
        if batch.schema.names != SAMPLE_SCHEMA.names:
            raise ValueError(f"batch columns {batch.schema.names} are not SAMPLE_SCHEMA {SAMPLE_SCHEMA.names}")
        n = batch.num_rows
        sid = numpy_values(batch.column(0), np.int32)
        if sid.min() < 0:
            raise ValueError("negative signal id in batch")
        if sid.max() >= self._part_of.shape[0]:
            self._grow(int(sid.max()) + 1)
        pidx = self._part_of[sid]
        if (pidx < 0).any():
            self._register_unknown(np.unique(sid[pidx < 0]).astype(np.int64))
            pidx = self._part_of[sid]
        if self._unknown_ids:
            self.stats.unknown_signal_rows += int(np.count_nonzero(pidx == self._part_index[UNKNOWN_PARTITION]))
        src = _Batch.of(batch, sid, self._code_of)
        d0, d1 = int(src.time.min()) // NS_PER_DAY, int(src.time.max()) // NS_PER_DAY
        ndays = d1 - d0 + 1  # per-row day numbers are only needed when the batch spans midnight
        p0, p1 = int(pidx.min()), int(pidx.max())
        row_bytes = batch.nbytes / n
        if p0 == p1 and ndays == 1:
            self._append(p0, d0, src, None, 0, n, row_bytes)
            return
        key = pidx - p0 if ndays == 1 else (pidx.astype(np.int64) - p0) * ndays + (src.time // NS_PER_DAY - d0)
        span = (p1 - p0 + 1) * ndays
        if span < 65536:
            counts = np.bincount(key, minlength=span)
            groups = np.flatnonzero(counts)
            # already grouped (non-decreasing keys): slices, no gather order needed
            order = None if bool((key[1:] >= key[:-1]).all()) else np.argsort(key.astype(np.uint16), kind="stable")
        else:
            groups, inv = np.unique(key, return_inverse=True)
            order = np.argsort(inv, kind="stable")
            counts = np.zeros(int(groups.max()) + 1, dtype=np.int64)
            counts[groups] = np.bincount(inv)
        s = 0
        for k in groups.tolist():
            c = int(counts[k])
            self._append(p0 + k // ndays, d0 + k % ndays, src, order, s, s + c, row_bytes)
            s += c

    def _append(self, pidx: int, day: int, src: _Batch, order: np.ndarray | None, start: int, end: int,
                row_bytes: float) -> None:
        """Queue the rows ``order[start:end]`` of ``src`` (rows ``start:end`` when ``order`` is
        None; one partition and day) on the open file, rotating at the row/byte limits."""
        while start < end:
            f = self._file_for(pidx, day)
            stop = start + min(end - start, self.max_file_rows - f.total_rows)
            take = stop - start
            t_us, sids = f.buf.append(src, slice(start, stop) if order is None else order[start:stop], take)
            f.buffered_rows += take
            nbytes = int(row_bytes * take)
            f.buffered_bytes += nbytes
            self._buffered_total += nbytes
            f.time_min = min(f.time_min, int(t_us.min()))
            f.time_max = max(f.time_max, int(t_us.max()))
            if f.seen.shape[0] < self._part_of.shape[0]:
                f.seen = np.concatenate([f.seen, np.zeros(self._part_of.shape[0] - f.seen.shape[0], dtype=bool)])
            f.seen[sids] = True
            start = stop
            if f.buffered_rows >= self._rg_rows or f.est_bytes() >= self.max_file_bytes:
                self._flush(f)
            if f.total_rows >= self.max_file_rows or f.written_bytes >= self.max_file_bytes:
                self._close_file(f)
        if self._buffered_total > self.max_buffer_bytes:
            for f in sorted(self._files, key=lambda f: -f.buffered_bytes):
                if self._buffered_total <= self.max_buffer_bytes // 2:
                    break
                self._flush(f)

    def _dictionary(self, asset: str) -> pa.Array:
        p = self._part_index[asset]
        d = self._dict_cache.get(p)
        if d is None:
            d = self._dict_cache[p] = arrow_strings(self._keys[p])
        return d

    def _file_for(self, pidx: int, day: int) -> _File:
        asset = self._partitions[pidx]
        f = self._open_files.get((asset, day))
        if f is None:
            date = str(np.datetime64(day, "D"))
            now = dt.datetime.now(dt.timezone.utc)
            name = f"part-{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.parquet"
            rel = f"{RAW_DIR}/asset={asset}/date={date}/{name}"
            f = _File(asset=asset, date=date, rel=rel, staged=self.root / mf.staged_path(rel), lane=len(self._files))
            self._open_files[(asset, day)] = f
            self._files.append(f)
        return f

    def _flush(self, f: _File) -> None:
        """Write the buffered rows of ``f`` as one row group (encoded on the encoder thread)."""
        if not f.buffered_rows:
            return
        table = f.buf.to_table(self._dictionary(f.asset), self._schema)
        if f.writer is None:
            f.sink = pa.OSFile(str(f.staged), "wb")
            f.writer = pq.ParquetWriter(
                f.sink,
                self._schema,
                compression=self.compression,
                compression_level=self.compression_level,
                use_dictionary=["signal", "value_text"],
                # No min/max for the dictionary column: Arrow finds the referenced keys (a hash
                # of the indices) and compares the strings for every row group, ~40 % of the
                # encoding time, and each row group holds all of its asset's signals, so the
                # range would prune nothing. Time statistics (used by readers) stay.
                write_statistics=_STATS_COLUMNS,
            )
        f.rows += table.num_rows
        self._buffered_total -= f.buffered_bytes
        nbytes = f.buffered_bytes
        f.buf = _Rows()  # the table owns the filled segments now
        f.buffered_rows, f.buffered_bytes = 0, 0
        if not self.encode_threads:
            self._encode(f, table, nbytes)
            return
        if not self._encoders:
            self._encoders = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"axedge-parquet-{i}")
                              for i in range(self.encode_threads)]
        fut = self._encoders[f.lane % len(self._encoders)].submit(self._encode, f, table, nbytes)
        f.encoding.append(fut)
        self._encoding.append(fut)
        while len(self._encoding) > self.encode_threads + 1:  # bounded memory: row groups queued for encoding
            self._encoding.popleft().result()

    @staticmethod
    def _encode(f: _File, table: pa.Table, nbytes: int) -> None:
        f.writer.write_table(table, row_group_size=table.num_rows)
        f.flushed_nbytes += nbytes
        f.written_bytes = f.sink.tell()

    def _wait_encoder(self, f: _File | None = None, *, raise_errors: bool = True) -> None:
        """Wait for the row groups of ``f`` (all files: None) to be encoded; their first error is
        raised (an OSError from the file), unless ``raise_errors`` is False (abort)."""
        futs = f.encoding if f is not None else [x for g in self._files for x in g.encoding]
        first: BaseException | None = None
        for fut in futs:
            try:
                fut.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, or dropped by abort
                first = first or exc
        for g in [f] if f is not None else self._files:
            g.encoding = []
        self._encoding = deque(x for x in self._encoding if not x.done())
        if first is not None and raise_errors:
            raise first

    def _close_file(self, f: _File) -> None:
        """Write the footer; the file stays staged until the group commits."""
        if f.closed:
            return
        self._flush(f)
        self._wait_encoder(f)
        f.writer.close()
        f.sink.close()
        f.closed = True
        f.written_bytes = f.staged.stat().st_size
        self._open_files = {k: v for k, v in self._open_files.items() if v is not f}

    def _grow(self, size: int) -> None:
        old = self._part_of.shape[0]
        self._part_of = np.concatenate([self._part_of, np.full(size - old, -1, dtype=np.int32)])
        self._code_of = np.concatenate([self._code_of, np.zeros(size - old, dtype=np.int32)])

    def _ensure_partition(self, name: str) -> int:
        p = self._part_index.get(name)
        if p is None:
            p = self._part_index[name] = len(self._partitions)
            self._partitions.append(name)
            self._keys.append([])
        return p

    def _register_unknown(self, ids: np.ndarray) -> None:
        """Signal ids not in the catalog keep their rows under the key ``unknown/<id>``."""
        if ids.shape[0] == 0:
            return
        if int(ids.max()) >= self._part_of.shape[0]:
            self._grow(int(ids.max()) + 1)
        p = self._ensure_partition(UNKNOWN_PARTITION)
        for i in ids.tolist():
            key = f"unknown/{i}"
            self._part_of[i] = p
            self._code_of[i] = len(self._keys[p])
            self._keys[p].append(key)
            self._unknown_ids.add(i)
            if key not in self._catalog_rows:
                self._catalog_rows[key] = catalog_mod.normalize(
                    {"key": key, "name": str(i), "asset": "unknown", "asset_partition": UNKNOWN_PARTITION,
                     "description": "signal id not in the catalog when written", "extra": {"signal_id": i}})
                self._catalog_dirty = True
            log.warning("event=unknown_signal signal_id=%d key=%s", i, key)
        self._dict_cache.pop(p, None)

    # ------------------------------------------------------------------ commit

    def commit(self) -> dict | None:
        """Make every pending batch durable in one commit; return its manifest record."""
        self._check_open()
        self._finish_renames()
        if not self._pending_seqs:
            return None
        now_iso = _utc_now_iso()
        files: list[dict[str, Any]] = []
        try:
            for f in self._files:  # the encoder works on the last row groups while files finish in order
                self._flush(f)
            # each closed file is fsynced and hashed on a helper thread while the next one closes
            # (the filesystem can merge concurrent fsyncs into one journal commit)
            with ThreadPoolExecutor(max_workers=4, thread_name_prefix="axedge-fsync") as pool:
                digests = []
                for f in self._files:
                    self._close_file(f)
                    digests.append(pool.submit(_fsync_and_hash, f.staged))
                digests = [d.result() for d in digests]
            for f, digest in zip(self._files, digests, strict=True):
                files.append(
                    {
                        "path": f.rel,
                        "asset": f.asset,
                        "date": f.date,
                        "rows": f.rows,
                        "bytes": f.written_bytes,
                        "sha256": digest,
                        "time_min": mf.iso_us(f.time_min),
                        "time_max": mf.iso_us(f.time_max),
                        "signals": int(np.count_nonzero(f.seen)),
                    }
                )
            mf.fsync_dir(self._staging)
            for f in self._files:
                self._ensure_dir((self.root / f.rel).parent)
            if self._catalog_dirty:
                catalog_mod.save(self.root, catalog_mod.merge([], list(self._catalog_rows.values())), now_iso)
                self._catalog_dirty = False
        except OSError as exc:
            raise self._io_error(self._staging, exc, "finishing staged files") from exc
        entry = {
            "v": mf.MANIFEST_VERSION,
            "commit": uuid.uuid4().hex,
            "time": now_iso,
            "rows": sum(x["rows"] for x in files),
            "bytes": sum(x["bytes"] for x in files),
            "files": files,
            "buffers": {b: list(r) for b, r in self._pending_seqs.items()},
            "unknown_signals": sorted(self._unknown_ids),
            "provenance": self.provenance,
        }
        size = self._manifest.stat().st_size if self._manifest.exists() else 0
        try:
            mf.append_entry(self._manifest, entry)
        except OSError as exc:
            if not self._manifest.exists() or self._manifest.stat().st_size != size:
                # the line may or may not be durable: keep the staged files for open() to decide
                self._outcome_unknown = True
                raise DatasetError(
                    f"commit outcome unknown: appending to {self._manifest} failed and could not be undone "
                    f"({exc.strerror or exc})",
                    path=str(self._manifest),
                    hint="restart the agent: open() rolls the commit forward or quarantines its files",
                ) from exc
            raise self._io_error(self._manifest, exc, "appending to the manifest") from exc
        # ---- committed: from here on the commit stands, whatever happens
        for b, (_first, last) in self._pending_seqs.items():
            self._watermarks[b] = last
        self._unfinished = [(f.staged, self.root / f.rel) for f in self._files]
        self.stats.commits += 1
        self.stats.rows_committed += entry["rows"]
        self.stats.files_committed += len(files)
        self._reset_pending()
        self._finish_renames()
        return entry

    def abort(self) -> None:
        """Drop the pending (uncommitted) files; the caller replays their batches."""
        keep = self._outcome_unknown
        self._wait_encoder(raise_errors=False)
        for f in self._files:
            if not f.closed:
                for closer in (f.writer, f.sink):
                    if closer is None:
                        continue
                    try:
                        closer.close()
                    except (OSError, pa.ArrowException) as exc:
                        log.warning("event=abort_close_failed file=%s error=%s", f.staged, exc)
            self.stats.aborted_rows += f.total_rows
            if keep:
                continue
            try:
                f.staged.unlink(missing_ok=True)
            except OSError as exc:  # left for open() to quarantine
                log.warning("event=abort_unlink_failed file=%s error=%s", f.staged, exc)
        self._reset_pending()

    def _reset_pending(self) -> None:
        self._files, self._open_files = [], {}
        self._pending_seqs = {}
        self._first_write_at = None
        self._buffered_total = 0

    def _finish_renames(self) -> None:
        """Move committed files to their final names and make the renames durable."""
        if not self._unfinished:
            return
        try:
            dirs = set()
            for staged, final in self._unfinished:
                os.replace(staged, final)
                dirs.add(final.parent)
            for d in dirs:
                mf.fsync_dir(d)
            mf.fsync_dir(self._staging)
        except OSError as exc:
            raise DatasetError(
                f"commit is recorded but moving its files into {self._raw} failed: {exc.strerror}",
                path=str(exc.filename or self._raw),
                hint="the next commit or restart finishes the move; nothing is lost",
                transient=True,
            ) from exc
        self._unfinished = []

    def _ensure_dir(self, d: Path) -> None:
        if d in self._known_dirs:
            return
        created = []
        p = d
        while not p.exists():
            created.append(p)
            p = p.parent
        for c in reversed(created):
            c.mkdir(exist_ok=True)
            mf.fsync_dir(c.parent)
        self._known_dirs.add(d)

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        state = mf.read_manifest(self._manifest)
        rec: dict[str, Any] = {"commits": len(state.entries), "rolled_forward": [], "quarantined": [],
                               "torn_manifest_tail_bytes": 0}
        if state.torn_tail is not None:
            keep = self._quarantine / f"manifest-torn-tail-{_utc_stamp()}.jsonl"
            keep.write_bytes(state.torn_tail)
            mf.truncate_to(self._manifest, state.valid_size)
            rec["torn_manifest_tail_bytes"] = len(state.torn_tail)
            self.stats.torn_manifest_tails += 1
            log.warning("event=manifest_torn_tail bytes=%d kept=%s", len(state.torn_tail), keep)
        dirs: set[Path] = set()
        for e in state.entries:
            for f in e["files"]:
                final = self.root / f["path"]
                if final.exists():
                    continue
                staged = self.root / mf.staged_path(f["path"])
                if not staged.exists():
                    raise DatasetError(
                        f"committed file {final} is missing (commit {e['commit']}) and has no staged copy",
                        path=str(final),
                        hint="restore the file from a backup, or remove its commit line from "
                        f"{self._manifest} to accept the loss",
                    )
                self._ensure_dir(final.parent)
                os.replace(staged, final)
                dirs.add(final.parent)
                rec["rolled_forward"].append(f["path"])
        for d in dirs:
            mf.fsync_dir(d)
        for p in sorted(self._staging.iterdir()):
            if p.name.startswith(".probe-"):
                p.unlink()
                continue
            target = self._quarantine / p.name
            if target.exists():
                target = self._quarantine / f"{p.name}.{uuid.uuid4().hex[:8]}"
            os.replace(p, target)
            rec["quarantined"].append(str(target.relative_to(self.root)))
            log.warning("event=staged_file_quarantined file=%s reason=not_in_manifest", target)
        if rec["quarantined"] or dirs:
            mf.fsync_dir(self._staging)
            mf.fsync_dir(self._quarantine)
        self.stats.rolled_forward_files += len(rec["rolled_forward"])
        self.stats.quarantined_files += len(rec["quarantined"])
        if rec["rolled_forward"]:
            log.warning("event=commit_rolled_forward files=%d", len(rec["rolled_forward"]))
        self._watermarks = mf.watermarks(state.entries)
        rec["watermarks"] = dict(self._watermarks)
        self.recovery = rec

    def _write_dataset_json(self) -> None:
        path = self._meta / DATASET_FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "created": _utc_now_iso()}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {path}: {exc}", path=str(path),
                               hint="restore it from a backup or point the sink at another directory") from exc
        if doc.get("format") != FORMAT_NAME or int(doc.get("format_version", 0)) > FORMAT_VERSION:
            raise DatasetError(
                f"{self.root} holds {doc.get('format')} version {doc.get('format_version')}, "
                f"this axedge writes {FORMAT_NAME} version {FORMAT_VERSION}",
                path=str(path), hint="upgrade axedge or write to another directory",
            )
        if doc.get("provenance") == self.provenance and "layers" in doc:
            return
        doc.update(provenance=self.provenance, updated=_utc_now_iso(),
                   layers={"raw": {"path": RAW_DIR, "partitioning": ["asset", "date"]}})
        tmp = self._meta / f".{DATASET_FILE}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(doc, f, indent=1, sort_keys=True, default=str)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            mf.fsync_dir(self._meta)
        except OSError as exc:
            raise self._unusable(self._meta, exc) from exc

    # ------------------------------------------------------------------ helpers

    @property
    def _raw(self) -> Path:
        return self.root / RAW_DIR

    @property
    def _meta(self) -> Path:
        return self.root / META_DIR

    @property
    def _staging(self) -> Path:
        return self.root / STAGING_DIR

    @property
    def _quarantine(self) -> Path:
        return self.root / QUARANTINE_DIR

    @property
    def _manifest(self) -> Path:
        return self.root / META_DIR / MANIFEST_FILE

    def _check_open(self) -> None:
        if not self._opened:
            raise RuntimeError("RawDatasetWriter.open() must be called first")
        if self._outcome_unknown:
            raise DatasetError("a commit's outcome is unknown after a failed manifest append",
                               path=str(self._manifest), hint="restart the agent (open() recovers)")

    def _unusable(self, path: Path, exc: OSError) -> DatasetError:
        return DatasetError(
            f"dataset directory {path} is not usable: {exc.strerror or exc}",
            path=str(path),
            hint="create it or give the agent's user write access (chown/chmod), or set the sink's path "
            "to a writable directory",
            transient=exc.errno in _SPACE_ERRNOS,
        )

    def _io_error(self, path: Path, exc: OSError, doing: str) -> DatasetError:
        if exc.errno in _SPACE_ERRNOS:
            return DatasetError(
                f"disk full while {doing} in {path}",
                path=str(exc.filename or path),
                hint="free space on that filesystem or lower max_file_bytes; uncommitted rows stay in the "
                "buffer and are written again (call abort() first)",
                transient=True,
            )
        return DatasetError(
            f"I/O error while {doing} in {path}: {exc.strerror or exc}",
            path=str(exc.filename or path),
            hint="check the disk and permissions; uncommitted rows stay in the buffer (call abort() first)",
            transient=True,
        )

    def stats_dict(self) -> dict[str, int]:
        return asdict(self.stats)


@dataclass(slots=True)
class _Batch:
    """The columns of one SAMPLE batch as numpy views (ns timestamps, dictionary codes)."""

    sid: np.ndarray
    code: np.ndarray
    time: np.ndarray  # source time, int64 ns
    recv: np.ndarray  # int64 ns
    value: np.ndarray
    valid: np.ndarray | None
    quality: np.ndarray
    text: pa.Array | None  # None when all null
    server: pa.Array | None  # us, None when all null

    @classmethod
    def of(cls, batch: pa.RecordBatch, sid: np.ndarray, code_of: np.ndarray) -> _Batch:
        value, text, server = batch.column(4), batch.column(5), batch.column(2)
        n = batch.num_rows
        return cls(
            sid=sid,
            code=code_of[sid],
            time=numpy_values(batch.column(1), np.int64),
            recv=numpy_values(batch.column(3), np.int64),
            value=numpy_values(value, np.float64),
            valid=numpy_valid(value),
            quality=numpy_values(batch.column(6), np.uint32),
            text=None if text.null_count == n else text,
            server=None if server.null_count == n else server.cast(TS_US_UTC, safe=False),
        )


def _fsync_and_hash(path: Path) -> str:
    mf.fsync_file(path)
    return mf.sha256_file(path)


def _utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc_stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
