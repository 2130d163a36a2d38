"""A damaged buffer store fails startup with its path and what to do; a damaged batch inside a
healthy store is quarantined and counted, never delivered as data."""

import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge_agent.buffer import open_buffer
from edge_agent.buffer.sqlite import SqliteBuffer
from edge_agent.core.channel import WhenFull
from edge_agent.errors import BufferCorrupt, BufferFull
from tests.unit.buffer.batches import sample_batch


@contextmanager
def _db(path: Path):
    """A plain sqlite3 connection that commits and closes (``sqlite3.connect`` as a context
    manager only commits, and an open connection would hold the store's lock)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _filled(path: Path, n: int = 12, rows: int = 3000) -> list[int]:
    buf = SqliteBuffer(path, 10**10, WhenFull.block)
    seqs = [buf.put(sample_batch(rows, i)) for i in range(n)]
    buf.close()
    return seqs


def _damage(kind: str, path: Path) -> None:
    if kind == "not_sqlite":
        path.write_bytes(b"PAR1" + bytes(range(256)) * 64)
    elif kind == "truncated":
        _filled(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "unknown_version":
        _filled(path, n=1)
        with _db(path) as conn:
            conn.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    elif kind == "foreign_sqlite":
        with _db(path) as conn:
            conn.execute("CREATE TABLE readings (t REAL, v REAL)")


@pytest.mark.parametrize("kind", ["not_sqlite", "truncated", "unknown_version", "foreign_sqlite"])
def test_corrupt_buffer_fails_startup_with_path(tmp_path, kind):
    path = tmp_path / "state" / "buffers" / "raw.sqlite"
    path.parent.mkdir(parents=True)
    _damage(kind, path)
    before = path.read_bytes()
    with pytest.raises(BufferCorrupt) as err:
        open_buffer("sqlite", path, 10**9, "block", "normal")
    text = str(err.value)
    assert str(path) in text
    assert "move" in text or "aside" in text
    assert isinstance(err.value.__cause__, sqlite3.Error) or kind in ("unknown_version", "foreign_sqlite")
    assert path.read_bytes() == before, "opening a damaged store must not modify it"


def test_corrupt_buffer_message_reaches_the_operator_through_a_process(tmp_path):
    """What an operator sees: a one-line error naming the file, not a traceback from sqlite3."""
    path = tmp_path / "raw.sqlite"
    _damage("not_sqlite", path)
    code = ("import sys\nfrom edge_agent.buffer import open_buffer\nfrom edge_agent.errors import AxedgeError\n"
            "try:\n    open_buffer('sqlite', sys.argv[1], 10**9, 'block')\n"
            "except AxedgeError as exc:\n    print(exc, file=sys.stderr); sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert str(path) in proc.stderr and "not in the dataset yet" in proc.stderr


def test_damaged_batch_is_quarantined_and_counted(tmp_path):
    path = tmp_path / "raw.sqlite"
    seqs = _filled(path, n=4, rows=500)
    with _db(path) as conn:
        (blob,) = conn.execute("SELECT blob FROM batches WHERE seq = ?", (seqs[1],)).fetchone()
        damaged = bytearray(blob)
        damaged[len(damaged) // 2] ^= 0xFF  # one flipped bit pattern inside the values
        conn.execute("UPDATE batches SET blob = ? WHERE seq = ?", (bytes(damaged), seqs[1]))
    drops = []
    buf = SqliteBuffer(path, 10**10, WhenFull.block, on_drop=lambda rows, reason: drops.append((rows, reason)))
    tx = buf.begin(10**6)
    assert tx.seqs == [seqs[0], seqs[2], seqs[3]]
    for seq, batch in zip(tx.seqs, tx.batches, strict=True):
        assert batch.equals(sample_batch(500, seqs.index(seq)))
    assert drops == [(500, "buffer_corrupt")]
    assert buf.rows == 1500
    buf.end(tx, accept=True)
    buf.close()
    with _db(path) as conn:
        assert conn.execute("SELECT seq, reason FROM quarantine").fetchall() == [(seqs[1], "checksum mismatch")]


def test_full_disk_is_a_clear_error_and_nothing_committed_is_lost(tmp_path):
    path = tmp_path / "raw.sqlite"
    buf = SqliteBuffer(path, 10**10, WhenFull.block)
    kept = [buf.put(sample_batch(2000, i)) for i in range(3)]
    pages = buf._conn.execute("PRAGMA page_count").fetchone()[0]
    buf._conn.execute(f"PRAGMA max_page_count = {pages + 1}")  # the disk ends here
    with pytest.raises(BufferFull) as err:
        buf.put(sample_batch(20000, 99))
    assert "disk full" in str(err.value) and str(path) in str(err.value)
    assert isinstance(err.value.__cause__, sqlite3.OperationalError)
    assert (buf.batches, buf.rows) == (3, 6000)
    tx = buf.begin(10**6)
    assert tx.seqs == kept
    buf.end(tx, accept=True)  # draining frees pages inside the file: writing works again
    assert buf.put(sample_batch(2000, 7)) > kept[-1]
    buf.close()
    buf = SqliteBuffer(path, 10**10, WhenFull.block)
    assert buf.batches == 1
    buf.close()
