"""Behaviour of both buffers that the model test does not reach: persistence, limits, misuse,
threads, and the SQLite store layout."""

import sqlite3
import threading

import pytest

from edge_agent.buffer import open_buffer
from edge_agent.buffer.memory import MemoryBuffer
from edge_agent.buffer.sqlite import FORMAT_VERSION, SqliteBuffer
from edge_agent.core.channel import WhenFull
from edge_agent.errors import BufferError, BufferFull

KINDS = ["sqlite", "memory"]


@pytest.fixture(params=KINDS)
def opener(request, tmp_path):
    drops: list[tuple[int, str]] = []

    def _open(max_bytes=10**9, when_full="block", fsync="off"):
        return open_buffer(request.param, tmp_path / "state" / "raw.sqlite", max_bytes, when_full, fsync,
                           on_drop=lambda rows, reason: drops.append((rows, reason)))

    _open.kind = request.param
    _open.drops = drops
    return _open


def test_put_begin_end_roundtrip_keeps_schema_metadata(opener, make_batch):
    buf = opener()
    batch = make_batch(100, 1)
    seq = buf.put(batch)
    tx = buf.begin(1000)
    assert tx.seqs == [seq]
    assert tx.batches[0].equals(batch, check_metadata=True)
    assert tx.batches[0].schema.metadata == batch.schema.metadata
    buf.end(tx, accept=True)
    assert (buf.rows, buf.nbytes, buf.batches) == (0, 0, 0)
    assert buf.begin(1000) is None
    buf.close()


def test_reject_returns_batches_to_the_front_in_order(opener, make_batch):
    buf = opener()
    seqs = [buf.put(make_batch(10, i)) for i in range(4)]
    tx1 = buf.begin(20)
    tx2 = buf.begin(20)
    assert (tx1.seqs, tx2.seqs) == (seqs[:2], seqs[2:])
    buf.end(tx2, accept=False)
    buf.end(tx1, accept=False)
    assert buf.begin(10**6).seqs == seqs
    buf.close()


def test_begin_returns_one_batch_larger_than_max_rows(opener, make_batch):
    buf = opener()
    buf.put(make_batch(50, 1))
    buf.put(make_batch(1, 2))
    tx = buf.begin(10)
    assert tx.rows == 50 and len(tx.seqs) == 1
    buf.close()


def test_ending_a_transaction_twice_is_an_error(opener, make_batch):
    buf = opener()
    buf.put(make_batch(5, 1))
    tx = buf.begin(10)
    buf.end(tx, accept=False)
    with pytest.raises(BufferError, match="already ended"):
        buf.end(tx, accept=True)
    assert buf.rows == 5
    buf.close()


def test_closed_buffer_refuses_work_and_close_is_idempotent(opener, make_batch):
    buf = opener()
    buf.close()
    buf.close()
    with pytest.raises(BufferError, match="closed"):
        buf.put(make_batch(1, 1))


@pytest.mark.parametrize("policy", list(WhenFull))
def test_batch_larger_than_max_bytes_is_accepted_when_empty(opener, make_batch, policy):
    buf = opener(max_bytes=100, when_full=policy)
    assert buf.put(make_batch(200, 1)) is not None
    assert buf.nbytes > 100
    buf.close()


def test_block_raises_buffer_full_naming_limit(opener, make_batch):
    buf = opener(max_bytes=100, when_full="block")
    buf.put(make_batch(20, 1))
    with pytest.raises(BufferFull) as err:
        buf.put(make_batch(20, 2))
    assert "max_bytes=100" in str(err.value)
    if opener.kind == "sqlite":
        assert str(buf.path) in str(err.value)
    assert err.value.transient
    assert buf.batches == 1 and opener.drops == []
    buf.close()


def test_drop_newest_counts_the_incoming_rows(opener, make_batch):
    buf = opener(max_bytes=100, when_full="drop_newest")
    first = buf.put(make_batch(20, 1))
    assert buf.put(make_batch(7, 2)) is None
    assert opener.drops == [(7, "buffer_full")]
    assert buf.begin(100).seqs == [first]
    buf.close()


def test_drop_oldest_evicts_waiting_batches_but_never_in_flight(opener, make_batch):
    one = {"sqlite": SqliteBuffer, "memory": MemoryBuffer}[opener.kind].size_of(make_batch(10, 1))
    buf = opener(max_bytes=int(one * 2.5), when_full="drop_oldest")
    a = buf.put(make_batch(10, 1))
    tx = buf.begin(10)
    b = buf.put(make_batch(10, 2))
    c = buf.put(make_batch(10, 3))  # evicts b (a is in flight)
    assert opener.drops == [(10, "buffer_full")]
    buf.end(tx, accept=False)
    assert buf.begin(100).seqs == [a, c]
    assert b not in (a, c)
    with pytest.raises(BufferFull, match="in flight"):
        buf.put(make_batch(10, 4))  # only in-flight batches left to evict
    buf.close()


def test_ack_through_ignores_other_buffers_and_counts_rows(opener, make_batch):
    buf = opener()
    seqs = [buf.put(make_batch(3 + i, i)) for i in range(3)]
    assert buf.ack_through("another-buffer", seqs[-1]) == 0
    assert buf.ack_through(buf.buffer_id, seqs[1]) == 3 + 4
    assert buf.begin(100).seqs == [seqs[2]]
    buf.close()


def test_concurrent_producer_and_consumer_lose_and_duplicate_nothing(opener, make_batch):
    buf = opener()
    n = 200
    seen: list[int] = []

    def produce():
        for i in range(n):
            buf.put(make_batch(1 + i % 5, i))

    producer = threading.Thread(target=produce)
    producer.start()
    while producer.is_alive() or buf.batches:
        tx = buf.begin(7)
        if tx is None:
            continue
        if tx.id % 4 == 0:
            buf.end(tx, accept=False)  # handed out again by the next begin
            continue
        seen.extend(int(b["source_time"][0].value) for b in tx.batches)
        buf.end(tx, accept=True)
    producer.join()
    expected = [int(make_batch(1 + i % 5, i)["source_time"][0].value) for i in range(n)]
    assert seen == expected
    buf.close()


def test_accept_all_deletes_every_transaction_once(opener, make_batch):
    buf = opener()
    for i in range(4):
        buf.put(make_batch(10, i))
    txs = [buf.begin(1) for _ in range(3)]
    assert [len(tx.seqs) for tx in txs] == [1, 1, 1]
    buf.end(txs[0], accept=True)  # already ended: skipped
    buf.accept_all(txs)
    assert all(tx.done for tx in txs)
    assert (buf.rows, buf.batches) == (10, 1)
    left = buf.begin(100)
    assert left.batches[0].equals(make_batch(10, 3))
    buf.accept_all([left])
    assert (buf.rows, buf.nbytes, buf.batches) == (0, 0, 0)


def test_memory_buffers_have_distinct_ids_and_sequences_start_at_one(make_batch):
    a = open_buffer("memory", None, 10**6, "block")
    b = open_buffer("memory", None, 10**6, "block")
    assert a.buffer_id != b.buffer_id
    assert a.put(make_batch(1, 1)) == 1


def test_open_buffer_rejects_unknown_kind_and_missing_path(tmp_path):
    with pytest.raises(ValueError, match="unknown buffer kind"):
        open_buffer("disk", tmp_path / "x", 1, "block")
    with pytest.raises(ValueError, match="needs a path"):
        open_buffer("sqlite", None, 1, "block")
    with pytest.raises(ValueError, match="fsync"):
        open_buffer("sqlite", tmp_path / "b.sqlite", 1, "block", fsync="sometimes")


# --- SQLite persistence ------------------------------------------------------------------------


def test_sqlite_replays_in_flight_and_keeps_id_and_sequence_across_restarts(tmp_path, make_batch):
    path = tmp_path / "b.sqlite"
    buf = SqliteBuffer(path, 10**9, WhenFull.block, fsync="normal")
    bid = buf.buffer_id
    s1, s2 = buf.put(make_batch(4, 1)), buf.put(make_batch(5, 2))
    tx = buf.begin(4)
    assert tx.seqs == [s1]
    buf.close()  # tx never ended: s1 must come back first

    buf = SqliteBuffer(path, 10**9, WhenFull.block, fsync="normal")
    assert (buf.buffer_id, buf.rows, buf.batches) == (bid, 9, 2)
    tx = buf.begin(100)
    assert tx.seqs == [s1, s2]
    assert tx.batches[1].equals(make_batch(5, 2))
    buf.end(tx, accept=True)
    buf.close()

    buf = SqliteBuffer(path, 10**9, WhenFull.block)
    assert buf.batches == 0
    assert buf.put(make_batch(1, 3)) > s2  # never reused, even after the table emptied
    buf.close()


def test_sqlite_store_layout_and_pragmas(tmp_path, make_batch):
    path = tmp_path / "b.sqlite"
    buf = SqliteBuffer(path, 10**9, WhenFull.block, fsync="full")
    buf.put(make_batch(3, 1))
    assert buf._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert buf._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    buf.close()
    conn = sqlite3.connect(path)
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert meta["format_version"] == str(FORMAT_VERSION)
    assert meta["buffer_id"] == buf.buffer_id
    (rows, nbytes, blob), = conn.execute("SELECT rows, nbytes, blob FROM batches")
    assert (rows, nbytes) == (3, len(blob))
    conn.close()


def test_sqlite_blobs_are_lz4_compressed_and_uncompressed_blobs_still_read(tmp_path, make_batch):
    """Blobs are LZ4-compressed IPC (a fifth of the bytes through the WAL for sample batches);
    a store holding uncompressed blobs (written before) reads back the same."""
    import zlib

    import pyarrow as pa

    path = tmp_path / "b.sqlite"
    batch = make_batch(5000, 1)
    buf = SqliteBuffer(path, 10**9, WhenFull.block, fsync="off")
    buf.put(batch)
    buf.close()
    plain = pa.BufferOutputStream()
    with pa.ipc.new_stream(plain, batch.schema) as w:
        w.write_batch(batch)
    plain = plain.getvalue().to_pybytes()
    conn = sqlite3.connect(path)
    (blob,), = conn.execute("SELECT blob FROM batches")
    assert len(blob) < 0.9 * len(plain)  # random test data; sample batches of a plant shrink ~5x
    conn.execute("INSERT INTO batches (rows, nbytes, crc32, blob) VALUES (?, ?, ?, ?)",
                 (batch.num_rows, len(plain), zlib.crc32(plain), plain))
    conn.commit()
    conn.close()
    buf = SqliteBuffer(path, 10**9, WhenFull.block, fsync="off")
    tx = buf.begin(10**6)
    assert len(tx.batches) == 2 and all(b.equals(batch, check_metadata=True) for b in tx.batches)
    buf.close()


def test_sqlite_second_opener_is_refused(tmp_path, make_batch):
    path = tmp_path / "b.sqlite"
    buf = SqliteBuffer(path, 10**9, WhenFull.block)
    buf.put(make_batch(1, 1))
    with pytest.raises(BufferError, match="in use by another process") as err:
        SqliteBuffer(path, 10**9, WhenFull.block)
    assert str(path) in str(err.value)
    buf.close()
    SqliteBuffer(path, 10**9, WhenFull.block).close()


def test_sqlite_page_cache_stays_small_with_large_pages(tmp_path, make_batch):
    """SQLite sizes its page cache in pages when the store is first read (at the 4 KiB default
    page): the store then switches to 64 KiB pages, and without a fresh cache_size that cache
    held 500 pages, 32 MB of RAM, after ~20 MB of blobs. Measured with SQLite's own counter."""
    import ctypes
    import ctypes.util
    import os

    import pyarrow as pa

    from edge_agent.buffer.sqlite import CACHE_KIB, PAGE_SIZE

    name = ctypes.util.find_library("sqlite3")
    if not name:
        pytest.skip("libsqlite3 not found for sqlite3_memory_used")
    lib = ctypes.CDLL(name)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    buf = SqliteBuffer(tmp_path / "b.sqlite", 10**9, WhenFull.block, fsync="off")
    assert buf._conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    assert buf._conn.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    # incompressible text: each blob is ~1 MB in the WAL, 16 pages
    batch = make_batch(1, 1)
    i = batch.schema.get_field_index("value_text")
    big = batch.set_column(i, batch.schema.field(i), pa.array([os.urandom(500_000).hex()]))
    before = lib.sqlite3_memory_used()
    for _ in range(30):
        buf.put(big)
    grown = lib.sqlite3_memory_used() - before
    buf.close()
    assert grown < 8 * 2**20, f"SQLite holds {grown / 2**20:.1f} MB after 30 MB of blobs"


def test_sqlite_cache_hands_batches_to_the_sink_and_a_rejected_batch_is_read_back(tmp_path, make_batch):
    """The write-through cache gives a batch to ``begin`` without reading SQLite, then lets it go
    (the transaction holds it); a rejected batch comes back from the store, equal."""
    buf = SqliteBuffer(tmp_path / "b.sqlite", 10**9, WhenFull.block, fsync="off")
    batches = [make_batch(100, i) for i in range(3)]
    for b in batches:
        buf.put(b)
    tx = buf.begin(1)
    assert buf.read_backs == 0 and tx.batches[0].equals(batches[0])
    assert tx.seqs[0] not in buf._cache  # room for batches not yet taken
    buf.end(tx, accept=False)
    tx = buf.begin(1)
    assert buf.read_backs == 1 and tx.batches[0].equals(batches[0], check_metadata=True)
    buf.end(tx, accept=True)
    for i in (1, 2):  # the others still come from the cache, after any number of earlier takes
        tx = buf.begin(1)
        assert tx.batches[0].equals(batches[i]) and buf.read_backs == 1
        buf.end(tx, accept=True)
    assert buf._cache_bytes == 0 and buf.rows == 0
    buf.close()
