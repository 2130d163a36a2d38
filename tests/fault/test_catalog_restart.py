"""Buffered batches carry run-local signal ids. SIGKILL the agent while rows wait in its durable
buffer, restart it with the connectors declared in the other order (so a fresh catalog would hand
out the ids the other way round), and check that every replayed row lands under its own signal:
the saved catalog gives each key its old id back (edge_agent/signals.py)."""

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from edge_agent.signals import load_catalog


def _connector(name: str, level: float) -> str:
    """A synthetic connector whose one signal is the constant ``level``."""
    return f"""\
  - id: {name}
    type: synthetic
    asset: plant1/casting/line1/{name}
    rate_hz: 200
    chunk_secs: 0.02
    signals:
      - {{name: level, waveform: constant, amplitude: 0, offset: {level}}}
"""


CONNECTORS = {"alpha": _connector("alpha", 1.0), "beta": _connector("beta", 2.0)}


HEAD = """\
agent:
  id: gw-catalog
  data_dir: {root}/data
  state_dir: {root}/state
  log_level: warning
  http: {{enabled: false}}
core:
  batch: {{max_rows: 500, max_age_secs: 0.05}}
buffer: {{kind: sqlite, fsync: normal}}
sinks:
  - {{id: raw, type: parquet, max_file_rows: 10000000, max_file_age_secs: {age}}}
connectors:
"""


def _config(tmp: Path, order: list[str], age: float) -> Path:
    p = tmp / f"agent-{'-'.join(order)}.yaml"
    p.write_text(HEAD.format(root=tmp, age=age) + "".join(CONNECTORS[c] for c in order))
    return p


def _buffered_rows(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT COALESCE(SUM(rows), 0) FROM batches").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def test_replayed_rows_keep_their_signal_after_restart_in_another_order(tmp_path):
    first = _config(tmp_path, ["alpha", "beta"], age=3600)  # nothing is committed during run 1
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run", str(first), "--no-status"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    db = tmp_path / "state" / "buffers" / "raw.sqlite"
    wal = db.with_name("raw.sqlite-wal")
    t0 = time.monotonic()
    try:  # the buffer holds an exclusive lock while the agent runs: watch its WAL grow instead
        while not (wal.exists() and wal.stat().st_size > 0):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() - t0 < 60, "the agent never wrote into its buffer"
            time.sleep(0.1)
        time.sleep(3.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    waiting = _buffered_rows(db)
    assert waiting >= 400  # 3 s at 2 x 200 rows/s, with slack for a busy machine
    saved = load_catalog(tmp_path / "state" / "signals.json")
    assert {s["key"]: s["id"] for s in saved} == {
        "plant1/casting/line1/alpha/level": 0, "plant1/casting/line1/beta/level": 1}

    second = _config(tmp_path, ["beta", "alpha"], age=0.2)
    res = subprocess.run([sys.executable, "-m", "edge_agent.cli", "run", str(second), "--no-status",
                          "--duration-secs", "3"], capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert _buffered_rows(db) == 0

    t = ds.dataset(tmp_path / "data" / "raw", partitioning="hive").to_table(columns=["signal", "value"])
    keys = t.column("signal").cast(pa.string())
    assert set(keys.to_pylist()) == {"plant1/casting/line1/alpha/level", "plant1/casting/line1/beta/level"}
    for key, want in (("plant1/casting/line1/alpha/level", 1.0), ("plant1/casting/line1/beta/level", 2.0)):
        vals = pc.filter(t.column("value"), pc.equal(keys, key))
        assert pc.all(pc.equal(vals, want)).as_py(), f"{key}: rows of the other signal were written under it"
    assert t.num_rows >= waiting
