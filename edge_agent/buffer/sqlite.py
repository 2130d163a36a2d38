"""Durable buffer: SQLite in WAL mode holding one LZ4-compressed Arrow IPC stream blob (with its
CRC-32) per batch.

``put`` commits before it returns; that commit is the durability point (see docs/buffer.md for
what survives a SIGKILL or a power loss under each ``fsync`` setting). The index of stored
batches, the in-flight set and the running totals live in memory (:class:`BatchIndex`), rebuilt
from the small columns on open, so the hot path never scans the table. The file is opened with
an exclusive lock: a second agent on the same store fails at startup instead of corrupting it.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from edge_agent.buffer.base import Buffer, Tx
from edge_agent.buffer.memory import BatchIndex
from edge_agent.core.channel import WhenFull
from edge_agent.errors import BufferCorrupt, BufferError, BufferFull

log = logging.getLogger("axedge.buffer")

FORMAT_VERSION = 1
SYNCHRONOUS = {"off": "OFF", "normal": "NORMAL", "full": "FULL"}
PAGE_SIZE = 65536  # batches are MB-sized blobs: fewer overflow pages, cheaper WAL frames
CACHE_KIB = 2048  # SQLite's page cache: 32 pages; the blobs pass through once (the OS caches the file)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rows INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE quarantine (seq INTEGER PRIMARY KEY, rows INTEGER, nbytes INTEGER, blob BLOB, reason TEXT NOT NULL);
"""


# LZ4 frame compression of the IPC body buffers: a 100k-row sample batch goes from 4.4 MB to
# ~0.9 MB in ~2 ms, so SQLite moves (WAL, then checkpoint) and CRCs a fifth of the bytes. The IPC
# stream names its codec, so readers need no flag (blobs written without it read the same).
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4" if pa.Codec.is_available("lz4") else None,
                                      use_threads=False)


def encode(batch: pa.RecordBatch) -> pa.Buffer:
    """One record batch as an Arrow IPC stream (schema with metadata + the batch), its buffers
    LZ4-compressed where pyarrow has the codec."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=_IPC_OPTIONS) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def decode(blob: bytes) -> pa.RecordBatch:
    """The batch of an IPC stream blob, zero copy over ``blob``."""
    return pa.ipc.open_stream(pa.py_buffer(blob)).read_next_batch()


def _corrupt_hint(path: Path) -> str:
    return (
        f"stop the agent and move the file aside (mv {path} {path}.corrupt), then start again with "
        "an empty buffer; the batches in that file are not in the dataset yet, keep it for recovery"
    )


class SqliteBuffer(Buffer):
    """The buffer contract on one SQLite file. Thread-safe: one connection behind a lock."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        when_full: WhenFull,
        fsync: str = "normal",
        on_drop: Callable[[int, str], None] | None = None,
        cache_max_bytes: int = 8 * 1024 * 1024,
    ):
        super().__init__(max_bytes, when_full, on_drop)
        # Write-through cache: batches just put are handed to the sink from memory, so a sink
        # that keeps up never reads its data back from SQLite (a restart reads from disk). It is
        # counted in decoded bytes; 8 MiB holds about two 100k-row batches, and a batch leaves it
        # when the sink takes it (not at the commit: the cache would stay full of written batches
        # for a whole commit interval). A sink that falls further behind reads the LZ4 blobs back
        # (~1 ms per 100k rows) instead of the cache holding RAM for it.
        self.cache_max_bytes = min(int(cache_max_bytes), int(max_bytes))
        self._cache: dict[int, tuple[pa.RecordBatch, int]] = {}
        self._cache_bytes = 0
        if fsync not in SYNCHRONOUS:
            raise ValueError(f"fsync must be one of {sorted(SYNCHRONOUS)}, not {fsync!r}")
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._index = BatchIndex()
        self._tx_ids = itertools.count(1)
        self._conn: sqlite3.Connection | None = None
        self._open()

    @staticmethod
    def size_of(batch: pa.RecordBatch) -> int:
        """Bytes a batch counts against ``max_bytes``: its IPC stream size."""
        return encode(batch).size

    # --- opening -----------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BufferError(f"cannot create the buffer directory {self.path.parent}: {exc}") from exc
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=0.5)
        except sqlite3.Error as exc:
            raise BufferError(f"cannot open buffer {self.path}: {exc}") from exc
        try:
            self._init_store(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise BufferError(
                    f"buffer {self.path} is in use by another process",
                    hint="only one agent may use a buffer file; stop the other agent or use another state_dir",
                ) from exc
            raise self._translate(exc, "open") from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise BufferCorrupt(f"buffer {self.path} is corrupt or not an axedge buffer: {exc}",
                                hint=_corrupt_hint(self.path)) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _init_store(self, conn: sqlite3.Connection) -> None:
        """Validate an existing store read-only (a damaged or foreign file is left untouched),
        or create a new one; then load the index from the small columns."""
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables:
            self._check_existing(conn, tables)
        else:
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[self.fsync]}")
        conn.execute("PRAGMA journal_size_limit=67108864")
        # The page cache budget is set again now that the page size is known: SQLite sized the
        # cache (-2000 KiB = 500 pages) when the first read ran, at the 4 KiB default page, and
        # kept 500 pages after the switch to 64 KiB pages, 32 MB of RAM. Blobs are read once.
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        if not tables:
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("buffer_id", str(uuid.uuid4())), ("format_version", str(FORMAT_VERSION))],
            )
            conn.execute("COMMIT")
        self.buffer_id = conn.execute("SELECT value FROM meta WHERE key = 'buffer_id'").fetchone()[0]
        for seq, rows, nbytes in conn.execute("SELECT seq, rows, nbytes FROM batches ORDER BY seq"):
            self._index.add(seq, rows, nbytes)

    def _check_existing(self, conn: sqlite3.Connection, tables: set[str]) -> None:
        if not {"meta", "batches", "quarantine"} <= tables:
            raise BufferCorrupt(
                f"{self.path} is an SQLite file but not an axedge buffer (tables: {sorted(tables)})",
                hint=f"buffer files belong to the agent alone; point state_dir elsewhere or move {self.path} aside",
            )
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        version = meta.get("format_version")
        if version != str(FORMAT_VERSION) or "buffer_id" not in meta:
            raise BufferCorrupt(
                f"buffer {self.path} has format version {version!r}; this axedge reads version {FORMAT_VERSION}",
                hint="open it with the axedge version that wrote it and drain it, or " + _corrupt_hint(self.path),
            )

    def _translate(self, exc: sqlite3.Error, op: str) -> BufferError:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return BufferFull(
                f"disk full: buffer {self.path} cannot grow ({op})",
                hint="free disk space or lower buffer.max_bytes; the sink drains the buffer meanwhile",
            )
        if getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return BufferCorrupt(f"buffer {self.path} is corrupt ({op}): {exc}", hint=_corrupt_hint(self.path))
        return BufferError(f"buffer {self.path}: {op} failed: {exc}")

    # --- contract ------------------------------------------------------------------------------

    def put(self, batch: pa.RecordBatch) -> int | None:
        blob = encode(batch)
        size, crc = blob.size, zlib.crc32(blob)
        dropped: list[int] = []
        seq: int | None = None
        with self._lock:
            conn = self._connection()
            evict = self._index.admit(size, self.max_bytes, self.when_full, str(self.path))
            if evict is None:
                dropped.append(batch.num_rows)
            else:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    if evict:
                        conn.executemany("DELETE FROM batches WHERE seq = ?", [(s,) for s in evict])
                    cur = conn.execute(
                        "INSERT INTO batches (rows, nbytes, crc32, blob) VALUES (?, ?, ?, ?)",
                        (batch.num_rows, size, crc, memoryview(blob)),
                    )
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback(conn)
                    raise self._translate(exc, "put") from exc
                dropped.extend(self._index.entries[s][0] for s in evict)
                self._uncache(evict)
                self._index.remove(evict)
                seq = cur.lastrowid
                self._index.add(seq, batch.num_rows, size)
                ram = batch.nbytes  # the cache holds the decoded batch: count its memory
                if self._cache_bytes + ram <= self.cache_max_bytes:
                    self._cache[seq] = (batch, ram)
                    self._cache_bytes += ram
        for rows in dropped:
            self.on_drop(rows, "buffer_full")
        return seq

    def begin(self, max_rows: int) -> Tx | None:
        while True:
            with self._lock:
                conn = self._connection()
                seqs = self._index.take(max_rows)
                if not seqs:
                    return None
                try:
                    stored = [self._stored(conn, s) for s in seqs]
                except sqlite3.Error as exc:
                    self._index.inflight.difference_update(seqs)
                    raise self._translate(exc, "read") from exc
                entries = dict(zip(seqs, (self._index.entries[s] for s in seqs), strict=True))
            good: list[tuple[int, pa.RecordBatch]] = []
            bad: list[tuple[int, str]] = []
            for seq, item in zip(seqs, stored, strict=True):
                if isinstance(item, pa.RecordBatch):  # from the write-through cache: no read back
                    good.append((seq, item))
                    continue
                self.read_backs += 1
                blob, crc = item
                if zlib.crc32(blob) != crc:
                    bad.append((seq, "checksum mismatch"))
                    continue
                try:
                    good.append((seq, decode(blob)))
                except (pa.ArrowInvalid, OSError) as exc:
                    bad.append((seq, f"undecodable: {exc}"))
            if bad:
                self._quarantine(bad)
            if good:
                return Tx(
                    id=next(self._tx_ids),
                    seqs=[s for s, _ in good],
                    batches=[b for _, b in good],
                    rows=sum(entries[s][0] for s, _ in good),
                    nbytes=sum(entries[s][1] for s, _ in good),
                )

    def end(self, tx: Tx, accept: bool) -> None:
        with self._lock:
            conn = self._connection()
            if tx.done:
                raise BufferError(f"transaction {tx.id} of buffer {self.path} was already ended")
            if accept:  # (taken batches already left the cache in begin)
                self._delete(conn, tx.seqs, "end")
                self._index.remove(tx.seqs)
            else:
                self._index.inflight.difference_update(tx.seqs)
            tx.done = True

    def accept_all(self, txs: list[Tx]) -> None:
        with self._lock:
            conn = self._connection()
            txs = [tx for tx in txs if not tx.done]
            seqs = [s for tx in txs for s in tx.seqs]
            if seqs:
                self._delete(conn, seqs, "end")  # one SQLite transaction for the whole commit
                self._index.remove(seqs)
            for tx in txs:
                tx.done = True

    def ack_through(self, buffer_id: str, seq: int) -> int:
        if buffer_id != self.buffer_id:
            return 0
        with self._lock:
            conn = self._connection()
            seqs = self._index.through(seq)
            if not seqs:
                return 0
            self._delete(conn, seqs, "ack_through")
            self._uncache(seqs)
            return self._index.remove(seqs)

    @property
    def rows(self) -> int:
        return self._index.rows

    @property
    def nbytes(self) -> int:
        return self._index.nbytes

    @property
    def batches(self) -> int:
        return len(self._index.entries)

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            conn, self._conn = self._conn, None
            self._cache.clear()
            self._cache_bytes = 0
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise self._translate(exc, "close") from exc

    # --- helpers -------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BufferError(f"buffer {self.path} is closed")
        return self._conn

    def _quarantine(self, bad: list[tuple[int, str]]) -> None:
        """Move damaged batches to the ``quarantine`` table (kept for forensics, out of the data
        path) and count their rows as dropped: one bad batch must not stop the sink forever."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                for seq, reason in bad:
                    conn.execute("INSERT INTO quarantine SELECT seq, rows, nbytes, blob, ? FROM batches WHERE seq = ?",
                                 (reason, seq))
                    conn.execute("DELETE FROM batches WHERE seq = ?", (seq,))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise self._translate(exc, "quarantine") from exc
            dropped = [(seq, reason, self._index.entries[seq][0]) for seq, reason in bad]
            self._index.remove([seq for seq, _ in bad])
        for seq, reason, rows in dropped:
            log.error("damaged batch moved to the quarantine table of the buffer",
                      extra={"path": str(self.path), "seq": seq, "rows": rows, "reason": reason})
            self.on_drop(rows, "buffer_corrupt")

    def _delete(self, conn: sqlite3.Connection, seqs: list[int], op: str) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM batches WHERE seq = ?", [(s,) for s in seqs])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise self._translate(exc, op) from exc

    def _stored(self, conn: sqlite3.Connection, seq: int) -> pa.RecordBatch | tuple[bytes, int]:
        """The batch from the write-through cache, or its stored ``(blob, crc32)`` row. A batch
        leaves the cache when it is taken: the transaction holds it now, and the room goes to
        batches not yet taken (a rejected one is read back from the store)."""
        hit = self._cache.pop(seq, None)
        if hit is None:
            return conn.execute("SELECT blob, crc32 FROM batches WHERE seq = ?", (seq,)).fetchone()
        self._cache_bytes -= hit[1]
        return hit[0]

    def _uncache(self, seqs) -> None:
        for s in seqs:
            hit = self._cache.pop(s, None)
            if hit is not None:
                self._cache_bytes -= hit[1]

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error is what gets raised; SQLite rolls back on its own when it can
