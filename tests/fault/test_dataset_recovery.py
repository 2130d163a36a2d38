"""Crash and corruption behaviour of the raw dataset writer (RawDatasetWriter.open() recovery).

The on-disk states are produced by real processes that die mid-commit (SIGKILL, os._exit at the
rename step) or by the exact file operations a crash leaves behind (a truncated staged file, a
torn manifest line).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import duckdb
import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from dataset_builder.format import DatasetError
from dataset_builder.manifest import read_manifest, sha256_file
from dataset_builder.writer import RawDatasetWriter

T0 = 1_763_942_000_000_000_000  # 2025-11-23T23:53:20Z: batches cross midnight
NSIG = 20
ASSETS = ["site/area/line1/press", "site/area/line2/oven"]

# Shared by this module and its child processes: the catalog and batch k (50 rows, value == k).
HEADER = textwrap.dedent(
    f"""
    import numpy as np, pyarrow as pa
    from dataset_builder.format import SAMPLE_SCHEMA, TS_NS_UTC
    ASSETS = {ASSETS!r}
    def records():
        return [dict(id=i, key=f"{{ASSETS[i % 2]}}/s{{i}}", name=f"s{{i}}", asset=ASSETS[i % 2]) for i in range({NSIG})]
    def batch(k):
        n = 50
        ids = np.arange(n, dtype=np.int32) % {NSIG}
        t = np.int64({T0}) + np.int64(k) * 10**9 * 20 + np.arange(n, dtype=np.int64) * 1000
        return pa.RecordBatch.from_arrays([pa.array(ids), pa.array(t).cast(TS_NS_UTC), pa.nulls(n, TS_NS_UTC),
            pa.array(t).cast(TS_NS_UTC), pa.array(np.full(n, float(k))), pa.nulls(n, pa.string()),
            pa.array(np.zeros(n, np.uint32))], schema=SAMPLE_SCHEMA)
    """
)
_H: dict = {}
exec(HEADER, _H)
_records, _batch = _H["records"], _H["batch"]

# A stand-in for the agent's sink loop: after a restart its buffer replays from a few seqs before
# the watermark (-1: nothing committed). it commits every second batch.
CHILD = HEADER + textwrap.dedent(
    """
    import os, sys
    from dataset_builder.writer import RawDatasetWriter
    root, crash_at_rename = sys.argv[1], sys.argv[2] == "1"
    if crash_at_rename:
        real = os.replace
        def dying_replace(src, dst):
            if "_staging" in str(src):
                os._exit(3)
            return real(src, dst)
        os.replace = dying_replace
    w = RawDatasetWriter(root, max_file_rows=70)
    marks = w.open()
    w.set_catalog(records())
    start = max(0, marks.get("buf", -1) - 3)
    print("ready", flush=True)
    for k in range(start, start + 100000):
        w.write("buf", k, batch(k))
        if k % 2:
            w.commit()
            print("committed", k, flush=True)
    """
)

# Writes fail like on a full disk (RLIMIT_FSIZE: EFBIG) after the first commit.
DISK_CHILD = HEADER + textwrap.dedent(
    """
    import json, resource, signal, sys
    from dataset_builder.format import DatasetError
    from dataset_builder.writer import RawDatasetWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    w = RawDatasetWriter(sys.argv[1], row_group_rows=50)
    w.open()
    w.set_catalog(records())
    w.write("buf", 0, batch(0))
    w.commit()
    resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))
    try:
        for k in range(1, 50):
            w.write("buf", k, batch(k))
        w.commit()
        print(json.dumps({"error": None}))
    except DatasetError as e:
        w.abort()
        print(json.dumps({"error": str(e), "transient": e.transient, "path": e.path}))
    """
)


def _spawn(root, crash_at_rename=False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), "1" if crash_at_rename else "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _check_dataset(root) -> int:
    """Everything the manifest commits is present, intact and read exactly once; nothing else is
    visible. Returns the committed watermark (-1: nothing committed)."""
    entries = read_manifest(root / "_axedge" / "manifest.jsonl").entries
    total = 0
    for e in entries:
        for f in e["files"]:
            p = root / f["path"]
            assert p.exists(), f["path"]
            assert sha256_file(p) == f["sha256"]
            assert pq.read_metadata(p).num_rows == f["rows"]
            total += f["rows"]
    assert not list((root / "raw").rglob("*.tmp"))
    assert not list((root / "_staging").iterdir())
    listed = {f["path"] for e in entries for f in e["files"]}
    on_disk = {p.relative_to(root).as_posix() for p in (root / "raw").rglob("*") if p.is_file()}
    assert on_disk == listed
    # seq ranges are contiguous from 0 and each seq's rows are present exactly once
    ranges = [e["buffers"]["buf"] for e in entries if "buf" in e["buffers"]]
    if not ranges:  # killed before the first commit
        assert total == 0
        return -1
    assert ranges[0][0] == 0
    for (_, last), (first, _) in zip(ranges, ranges[1:]):
        assert first == last + 1
    mark = ranges[-1][1]
    t = ds.dataset(root / "raw", partitioning="hive").to_table(columns=["value"])
    assert t.num_rows == total == 50 * (mark + 1)
    counts = np.bincount(t["value"].to_numpy().astype(np.int64))
    assert counts.tolist() == [50] * (mark + 1)
    return mark


def test_dataset_truncated_staged_file_is_quarantined_not_read(tmp_path):
    root = tmp_path / "ds"
    w = RawDatasetWriter(root, row_group_rows=50)
    w.open()
    w.set_catalog(_records())
    w.write("buf", 0, _batch(0))
    w.commit()
    for k in (1, 2, 3):
        w.write("buf", k, _batch(k))  # row groups flushed to staged files, never committed
    staged = sorted((root / "_staging").iterdir())
    assert staged
    victim = staged[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # the crash: a torn file
    del w  # no close(): the process is gone

    w2 = RawDatasetWriter(root)
    assert w2.open() == {"buf": 0}
    quarantined = sorted(p.name for p in (root / "_quarantine").iterdir())
    assert quarantined == sorted(p.name for p in staged)  # kept for forensics, none deleted
    assert w2.stats.quarantined_files == len(staged)
    assert len(w2.recovery["quarantined"]) == len(staged)
    assert not list((root / "_staging").iterdir())
    # readers see exactly the committed batch, through any of the documented paths
    assert ds.dataset(root / "raw", partitioning="hive").count_rows() == 50
    assert ds.dataset(root, partitioning="hive").count_rows() == 50  # even from the root
    n = duckdb.sql(f"select count(*) from read_parquet('{root}/raw/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
    assert n == 50
    # the uncommitted batches are replayed from the buffer and land once
    w2.set_catalog(_records())
    for k in range(4):
        w2.write("buf", k, _batch(k))
    w2.close()
    assert _check_dataset(root) == 3


def test_dataset_crash_after_manifest_rolls_forward(tmp_path):
    root = tmp_path / "ds"
    child = _spawn(root, crash_at_rename=True)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, err  # died at the first rename, right after the commit point
    entries = read_manifest(root / "_axedge" / "manifest.jsonl").entries
    assert len(entries) == 1 and entries[0]["buffers"] == {"buf": [0, 1]}
    assert not list((root / "raw").rglob("*.parquet"))  # nothing visible yet
    assert len(list((root / "_staging").iterdir())) == len(entries[0]["files"])

    w = RawDatasetWriter(root)
    assert w.open() == {"buf": 1}
    assert w.stats.rolled_forward_files == len(entries[0]["files"])
    assert w.stats.quarantined_files == 0
    assert _check_dataset(root) == 1


def test_dataset_replay_of_committed_seqs_is_skipped(tmp_path):
    root = tmp_path / "ds"
    w = RawDatasetWriter(root)
    w.open()
    w.set_catalog(_records())
    for k in range(5):
        w.write("buf", k, _batch(k))
    w.commit()
    w.write("buf", 5, _batch(5))  # pending when the process dies
    w.write("buf", 6, _batch(6))
    del w

    w2 = RawDatasetWriter(root)
    assert w2.open() == {"buf": 4}
    w2.set_catalog(_records())
    for k in range(10):  # the buffer replays everything it still holds
        w2.write("buf", k, _batch(k))
    assert w2.stats.skipped_batches == 5 and w2.stats.skipped_rows == 250
    w2.close()
    assert _check_dataset(root) == 9


def test_dataset_torn_manifest_line_is_not_a_commit(tmp_path):
    root = tmp_path / "ds"
    w = RawDatasetWriter(root)
    w.open()
    w.set_catalog(_records())
    w.write("buf", 0, _batch(0))
    w.commit()
    w.write("buf", 1, _batch(1))
    w.write("buf", 2, _batch(2))
    rec = w.commit()
    w.close()
    manifest = root / "_axedge" / "manifest.jsonl"
    data = manifest.read_bytes()
    # the crash: the second line was only half written; its files never left staging
    manifest.write_bytes(data[: len(data) - 40])
    for f in rec["files"]:
        os.replace(root / f["path"], root / "_staging" / (f["path"].rsplit("/", 1)[1] + ".tmp"))

    w2 = RawDatasetWriter(root)
    assert w2.open() == {"buf": 0}
    assert w2.recovery["torn_manifest_tail_bytes"] > 0 and w2.stats.torn_manifest_tails == 1
    assert len(w2.recovery["quarantined"]) == len(rec["files"])
    assert list((root / "_quarantine").glob("manifest-torn-tail-*"))
    assert manifest.read_bytes().endswith(b"\n") and len(read_manifest(manifest).entries) == 1
    w2.set_catalog(_records())
    for k in range(3):
        w2.write("buf", k, _batch(k))
    w2.close()
    assert _check_dataset(root) == 2


def test_dataset_missing_committed_file_fails_open_naming_it(tmp_path):
    root = tmp_path / "ds"
    w = RawDatasetWriter(root)
    w.open()
    w.set_catalog(_records())
    w.write("buf", 0, _batch(0))
    rec = w.commit()
    w.close()
    (root / rec["files"][0]["path"]).unlink()
    with pytest.raises(DatasetError) as ei:
        RawDatasetWriter(root).open()
    assert rec["files"][0]["path"] in str(ei.value) and "manifest" in ei.value.hint


def test_dataset_write_error_leaves_committed_data_intact(tmp_path):
    """A failing disk mid-write (RLIMIT_FSIZE makes writes fail like a full disk): a transient
    DatasetError, abort(), and the committed data is untouched and the replay lands once."""
    root = tmp_path / "ds"
    res = subprocess.run([sys.executable, "-c", DISK_CHILD, str(root)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["error"] and out["transient"] and out["path"], out
    assert not list((root / "_staging").iterdir())
    w = RawDatasetWriter(root)
    assert w.open() == {"buf": 0}
    w.set_catalog(_records())
    for k in range(3):
        w.write("buf", k, _batch(k))
    w.close()
    assert _check_dataset(root) == 2


def test_dataset_sigkill_mid_commit_never_exposes_partial_data(tmp_path):
    """SIGKILL the writing process at random moments (mostly inside commits: they fsync), restart,
    and check after every run that the committed dataset is whole and exactly once."""
    root = tmp_path / "ds"
    rnd = random.Random(20261123)
    marks, recovered = [], 0
    for _run in range(8):
        child = _spawn(root)
        line = child.stdout.readline()
        assert line.strip() == "ready", child.stderr.read()
        for _ in range(rnd.randint(0, 3)):  # progress-based, so the test does not depend on machine load
            assert child.stdout.readline().startswith("committed"), child.stderr.read()
        time.sleep(rnd.uniform(0.0, 0.3))  # a commit takes ~100 ms here (fsyncs): many kills land in one
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
        w = RawDatasetWriter(root)
        w.open()
        recovered += len(w.recovery["quarantined"]) + len(w.recovery["rolled_forward"])
        marks.append(_check_dataset(root))
    assert marks == sorted(marks) and marks[-1] > 0
    assert recovered > 0  # the kills did land while files were staged
