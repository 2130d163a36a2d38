"""RawDatasetWriter: routing, conversion, rotation, watermarks, abort, catalog, bad directories."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dataset_builder.format import RAW_FILE_SCHEMA, DatasetError, Quality
from dataset_builder.manifest import read_manifest, sha256_file
from dataset_builder.read import open_raw, read_catalog
from dataset_builder.writer import NS_PER_DAY, RawDatasetWriter

T0 = 1_763_900_000_000_000_000  # 2025-11-23T12:13:20Z
ASSETS = ["acme/plant1/line1/press", "acme/plant1/line2/oven", "acme/plant2/line1/robot"]


def opened(tmp_path, recs_, **kw) -> RawDatasetWriter:
    w = RawDatasetWriter(tmp_path / "ds", **kw)
    assert w.open() == {}
    w.set_catalog(recs_)
    return w


def committed_files(root):
    return sorted(p.relative_to(root).as_posix() for p in (root / "raw").rglob("*.parquet"))


def test_rows_are_routed_to_asset_and_utc_date_partitions(tmp_path, recs, mk):
    cat = recs(12, ASSETS)
    w = opened(tmp_path, cat)
    rng = np.random.default_rng(1)
    n = 5000
    ids = rng.integers(0, 12, n)
    # times spread over three UTC days, in random order, with sub-microsecond parts
    times = T0 + rng.integers(-NS_PER_DAY, 2 * NS_PER_DAY, n) + 789
    values = rng.normal(size=n)
    w.write("buf", 0, mk(ids, times, values))
    rec = w.commit()
    assert rec["rows"] == n and rec["buffers"] == {"buf": [0, 0]}

    t = open_raw(w.root).to_table()
    assert t.num_rows == n
    key_of = {r["id"]: r for r in cat}
    got = {(s, int(tm.value) if hasattr(tm, "value") else tm, a, d)
           for s, tm, a, d in zip(t["signal"].to_pylist(), pc.cast(t["time"], pa.int64()).to_pylist(),
                                  t["asset"].to_pylist(), t["date"].to_pylist())}
    expected = set()
    for i, tm in zip(ids.tolist(), times.tolist()):
        date = str(np.datetime64(tm // NS_PER_DAY, "D"))
        expected.add((key_of[i]["key"], tm // 1000, key_of[i]["asset_partition"], date))
    assert got == expected
    # values travel with their rows: compare sorted by (signal, time)
    want = sorted(zip([key_of[i]["key"] for i in ids.tolist()], (times // 1000).tolist(), values.tolist()))
    have = sorted(zip(t["signal"].to_pylist(), pc.cast(t["time"], pa.int64()).to_pylist(), t["value"].to_pylist()))
    assert have == want
    # one file per (asset, date) in one commit; each file's dictionary holds only its asset's keys
    assert len(rec["files"]) == len({(a, d) for _, _, a, d in expected})
    for f in rec["files"]:
        ft = pq.read_table(w.root / f["path"])
        assert ft.schema.remove_metadata() == RAW_FILE_SCHEMA.remove_metadata()
        assert ft.num_rows == f["rows"]
        keys = set(ft["signal"].combine_chunks().dictionary.to_pylist())
        assert all(k.startswith(f["asset"].replace(".", "/")) for k in keys)
        assert f["signals"] == len(set(ft["signal"].to_pylist()))
        assert f["sha256"] == sha256_file(w.root / f["path"])


def test_columns_keep_text_nulls_quality_and_three_timestamps(tmp_path, recs, mk):
    w = opened(tmp_path, recs(2, ASSETS[:1]))
    vals = np.array([1.5, np.nan, 2.5])
    b = mk([0, 1, 0], T0, vals, quality=[0, Quality.BAD_TIMEOUT, Quality.UNCERTAIN],
           text=[None, "jammed", None], server_ns=[T0 - 1000, T0 - 2000, T0 - 3999])
    w.write("b", 7, b)
    w.commit()
    t = open_raw(w.root).to_table().sort_by([("value_text", "ascending")])
    rows = sorted(open_raw(w.root).to_table().to_pylist(), key=lambda r: (r["signal"], r["quality"]))
    assert [r["value"] for r in rows] == [1.5, 2.5, None]
    assert [r["value_text"] for r in rows] == [None, None, "jammed"]
    assert [r["quality"] for r in rows] == [0, Quality.UNCERTAIN, Quality.BAD_TIMEOUT]
    srv = pc.cast(t["server_time"], pa.int64()).to_pylist()
    assert sorted(srv) == sorted([(T0 - 1000) // 1000, (T0 - 2000) // 1000, (T0 - 3999) // 1000])
    assert pc.cast(t["receive_time"], pa.int64()).to_pylist() == [(T0 + 5_000_000) // 1000] * 3
    assert t.schema.field("time").type == pa.timestamp("us", tz="UTC")


def test_unknown_signal_ids_are_kept_and_counted(tmp_path, recs, mk):
    w = opened(tmp_path, recs(3, ASSETS[:1]))
    w.write("b", 0, mk([0, 42, 42, 1, 99], T0))
    rec = w.commit()
    assert w.stats.unknown_signal_rows == 3
    assert rec["unknown_signals"] == [42, 99]
    t = open_raw(w.root).to_table()
    assert t.num_rows == 5
    unk = t.filter(pc.equal(t["asset"], "_unknown"))
    assert sorted(unk["signal"].to_pylist()) == ["unknown/42", "unknown/42", "unknown/99"]
    keys = read_catalog(w.root)["key"].to_pylist()
    assert "unknown/42" in keys and "unknown/99" in keys
    # the id becomes known later: new rows go to its real asset
    w.set_catalog(recs(100, ASSETS[:1]))
    w.write("b", 1, mk([42], T0))
    w.commit()
    t = open_raw(w.root).to_table()
    assert t.filter(pc.equal(t["signal"].cast(pa.string()), f"{ASSETS[0]}/sig42")).num_rows == 1


def test_rotation_on_rows_splits_files_exactly_and_makes_commit_due(tmp_path, recs, mk):
    w = opened(tmp_path, recs(4, ASSETS[:1]), max_file_rows=100)
    w.write("b", 0, mk(np.arange(90) % 4, T0))
    assert not w.commit_due()
    w.write("b", 1, mk(np.arange(260) % 4, T0))
    assert w.commit_due() and w.until_commit() == 0.0
    rec = w.commit()
    assert sorted(f["rows"] for f in rec["files"]) == [50, 100, 100, 100]
    assert rec["buffers"] == {"b": [0, 1]}
    assert not w.commit_due() and w.until_commit() is None


def test_rotation_on_bytes(tmp_path, recs, mk):
    limit = 40_000
    w = opened(tmp_path, recs(50, ASSETS[:1]), max_file_bytes=limit, row_group_rows=2000)
    rng = np.random.default_rng(2)
    for seq in range(20):
        w.write("b", seq, mk(rng.integers(0, 50, 2000), T0 + seq * 10**9, rng.normal(size=2000)))
    assert w.commit_due()
    rec = w.commit()
    sizes = [f["bytes"] for f in rec["files"]]
    assert len(sizes) >= 3
    # every file but the last one reached the limit; none is far beyond it (one row group)
    assert sum(s >= limit for s in sizes) >= len(sizes) - 1
    assert max(sizes) < 3 * limit
    assert sum(f["rows"] for f in rec["files"]) == 40_000


def test_rotation_on_age_with_injected_clock(tmp_path, recs, mk, clock):
    w = opened(tmp_path, recs(2, ASSETS[:1]), max_file_age_secs=30, clock=clock)
    assert w.until_commit() is None and not w.commit_due()
    w.write("b", 0, mk([0, 1], T0))
    clock.t += 10
    assert w.until_commit() == pytest.approx(20) and not w.commit_due()
    w.write("b", 1, mk([0, 1], T0))  # age counts from the oldest pending write
    clock.t += 20
    assert w.commit_due() and w.until_commit() == 0.0
    assert w.commit()["rows"] == 4
    assert w.until_commit() is None and not w.commit_due()


def test_committed_seqs_are_skipped_after_reopen(tmp_path, recs, mk):
    cat = recs(2, ASSETS[:1])
    w = opened(tmp_path, cat)
    w.write("b1", 3, mk([0], T0))
    w.write("b1", 5, mk([1], T0))
    w.write("b2", 0, mk([1], T0))
    w.commit()
    w.close()
    w2 = RawDatasetWriter(tmp_path / "ds")
    assert w2.open() == {"b1": 5, "b2": 0}
    w2.set_catalog(cat)
    for seq in range(7):
        w2.write("b1", seq, mk([0], T0, [float(seq)]))
    assert w2.stats.skipped_batches == 6
    rec = w2.commit()
    assert rec["buffers"] == {"b1": [6, 6]} and rec["rows"] == 1
    with pytest.raises(ValueError, match="not above"):
        w2.write("b1", 7, mk([0], T0))
        w2.write("b1", 7, mk([0], T0))
    assert open_raw(w2.root).count_rows() == 4  # 3 from the first run, seq 6; seq 7 is pending


def test_abort_drops_staged_files_and_allows_replay(tmp_path, recs, mk):
    w = opened(tmp_path, recs(2, ASSETS), max_file_rows=10)
    w.write("b", 0, mk(np.zeros(25, int), T0))
    assert list((w.root / "_staging").iterdir())
    w.abort()
    assert not list((w.root / "_staging").iterdir())
    assert w.stats.aborted_rows == 25 and w.commit() is None
    w.write("b", 0, mk(np.zeros(25, int), T0))  # the same seq again
    assert w.commit()["rows"] == 25
    assert open_raw(w.root).count_rows() == 25


def test_empty_batches_advance_the_watermark_without_files(tmp_path, recs, mk):
    w = opened(tmp_path, recs(1, ASSETS))
    w.write("b", 4, mk([], T0))
    rec = w.commit()
    assert rec["files"] == [] and rec["buffers"] == {"b": [4, 4]}
    assert RawDatasetWriter(tmp_path / "ds").open() == {"b": 4}


def test_metadata_files_and_catalog_union_across_runs(tmp_path, recs, mk):
    root = tmp_path / "ds"
    w = RawDatasetWriter(root, provenance={"gateway": "gw1", "config_hash": "abc"})
    w.open()
    w.set_catalog(recs(3, ASSETS[:1]))
    w.write("b", 0, mk([0, 1, 2], T0))
    w.close()
    meta = json.loads((root / "_axedge" / "dataset.json").read_text())
    assert meta["format"] == "axedge-dataset" and meta["format_version"] == 1
    assert meta["provenance"] == {"gateway": "gw1", "config_hash": "abc"}
    files = read_manifest(root / "_axedge" / "manifest.jsonl").entries[0]["files"]
    md = pq.read_schema(root / files[0]["path"]).metadata
    assert json.loads(md[b"axedge.provenance"]) == {"gateway": "gw1", "config_hash": "abc"}
    cat_json = root / "_axedge" / "signals.json"
    before = cat_json.stat().st_mtime_ns
    # second run: a different signal set; the unchanged catalog is not rewritten, a changed one is merged
    w = RawDatasetWriter(root, provenance={"gateway": "gw1", "config_hash": "def"})
    w.open()
    w.set_catalog(recs(3, ASSETS[:1]))
    w.write("b", 1, mk([0], T0))
    w.commit()
    assert cat_json.stat().st_mtime_ns == before
    other = [dict(r, id=r["id"], unit="bar") for r in recs(5, ASSETS[:1])][3:]
    for i, r in enumerate(other):
        r["id"] = i
    w.set_catalog(other)
    w.write("b", 2, mk([0], T0))
    w.close()
    cat = read_catalog(root).to_pylist()
    assert [r["key"] for r in cat] == [f"{ASSETS[0]}/sig{i}" for i in range(5)]
    assert [r["unit"] for r in cat] == ["degC"] * 3 + ["bar"] * 2
    assert json.loads(cat_json.read_text())["signals"][4]["unit"] == "bar"
    assert json.loads((root / "_axedge" / "dataset.json").read_text())["provenance"]["config_hash"] == "def"


def test_unusable_directory_raises_dataset_error_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    w = RawDatasetWriter(blocker / "ds")
    with pytest.raises(DatasetError) as ei:
        w.open()
    assert str(blocker / "ds") in str(ei.value) and ei.value.hint
    assert not ei.value.transient


def test_newer_format_version_is_refused(tmp_path):
    root = tmp_path / "ds"
    RawDatasetWriter(root).open()
    meta = root / "_axedge" / "dataset.json"
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps(dict(doc, format_version=99)))
    with pytest.raises(DatasetError, match="version 99"):
        RawDatasetWriter(root).open()


def test_constructor_does_no_io(tmp_path):
    RawDatasetWriter(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_text_and_server_time_stretches_survive_routing_and_buffering(tmp_path, recs, mk):
    w = opened(tmp_path, recs(4, ASSETS[:2]))
    expected = []
    for seq in range(3):
        ids = np.array([0, 1, 2, 3, 0, 1])
        text = [None, f"t{seq}a", None, None, None, f"t{seq}b"] if seq != 1 else None
        server = None if seq == 0 else T0 + np.arange(6) * 1000 + seq
        w.write("b", seq, mk(ids, T0 + seq * 10**9 + np.arange(6), np.arange(6) + 10.0 * seq, text=text, server_ns=server))
        for i in range(6):
            expected.append((int(ids[i]), 10.0 * seq + i, None if text is None else text[i],
                             None if server is None else int(server[i]) // 1000))
    w.commit()
    t = open_raw(w.root).to_table()
    got = sorted((int(s.rsplit("sig", 1)[1]), v, x, None if st is None else int(st.timestamp() * 1e6 + 0.5))
                 for s, v, x, st in zip(t["signal"].to_pylist(), t["value"].to_pylist(), t["value_text"].to_pylist(),
                                        t["server_time"].to_pylist()))
    assert got == sorted(expected)


def test_catalog_change_with_rows_buffered_keeps_their_keys(tmp_path, recs, mk):
    w = opened(tmp_path, recs(2, ASSETS[:1]))
    w.write("b", 0, mk([0, 1], T0))  # buffered under sig0, sig1
    moved = [dict(r, key=f"{ASSETS[1]}/moved{r['id']}", name=f"moved{r['id']}", asset=ASSETS[1],
                  asset_partition=None) for r in recs(2, ASSETS[:1])]
    w.set_catalog(moved)  # the same ids now name other signals in another asset
    w.write("b", 1, mk([0, 1], T0))
    w.commit()
    t = open_raw(w.root).to_table()
    pairs = sorted(zip(t["asset"].to_pylist(), t["signal"].to_pylist()))
    assert pairs == sorted([("acme.plant1.line1.press", f"{ASSETS[0]}/sig0"), ("acme.plant1.line1.press", f"{ASSETS[0]}/sig1"),
                            ("acme.plant1.line2.oven", f"{ASSETS[1]}/moved0"), ("acme.plant1.line2.oven", f"{ASSETS[1]}/moved1")])


def test_sliced_and_grouped_batches_keep_rows_values_and_nulls(tmp_path, recs, mk):
    """Batches that are slices of bigger ones (Arrow offsets) and batches already grouped by asset
    (routed by slicing, no reorder) keep every row with its value and null."""
    cat = recs(9, ASSETS)
    w = opened(tmp_path, cat)
    n = 3000
    ids = np.sort(np.arange(n) % 9 % 3 * 3 + np.arange(n) % 3)  # grouped by asset (id % 3)
    ids = np.concatenate([ids, np.arange(n) % 9])  # then interleaved
    times = T0 + np.arange(2 * n) * 1_000_000
    values = np.arange(2 * n, dtype=np.float64)
    values[::7] = np.nan  # nulls
    big = mk(ids, times, values)
    w.write("buf", 0, big.slice(5, n - 5))
    w.write("buf", 1, big.slice(n, n - 17))
    w.commit()
    t = open_raw(w.root).to_table()
    key_of = {r["id"]: r["key"] for r in cat}
    keep = np.r_[5:n, n:2 * n - 17]
    want = sorted(zip([key_of[i] for i in ids[keep].tolist()], (times[keep] // 1000).tolist(),
                      [None if np.isnan(v) else v for v in values[keep].tolist()]), key=repr)
    have = sorted(zip(t["signal"].to_pylist(), pc.cast(t["time"], pa.int64()).to_pylist(), t["value"].to_pylist()),
                  key=repr)
    assert have == want


def test_writing_does_not_import_pandas(tmp_path):
    """pyarrow's ``to_numpy`` / ``pa.array`` import pandas when installed (~50 MB RSS): the agent's
    write path avoids them."""
    import subprocess
    import sys

    code = f"""
import sys, numpy as np
sys.path[:0] = {sys.path!r}
from tests.unit.dataset_builder.conftest import records
from edge_agent.core.chunk import SampleChunk, chunks_to_batch
from dataset_builder.writer import RawDatasetWriter
assert "pandas" not in sys.modules
w = RawDatasetWriter({str(tmp_path / "ds")!r})
w.open()
w.set_catalog(records(6, ["a/b/c", "a/b/d"]))
values = np.arange(100.0)
chunk = SampleChunk.from_values(np.arange(100) % 6, values, source_time_ns=1_763_900_000_000_000_000 + np.arange(100))
chunk.valid = values % 5 != 0
w.write("buf", 0, chunks_to_batch([chunk]))
w.commit()
assert "pandas" not in sys.modules, "pandas was imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(tmp_path))


def test_encoder_thread_error_fails_the_commit_and_abort_allows_an_exact_replay(tmp_path):
    """Row groups are encoded on a worker thread; a write error there (a real EFBIG from a file
    size limit) surfaces as a transient DatasetError from write() or commit(), abort() drops the
    staged files, and replaying the same batches commits every row once."""
    import subprocess
    import sys

    code = f"""
import resource, signal, sys
import numpy as np
sys.path[:0] = {sys.path!r}
from tests.unit.dataset_builder.conftest import records
from edge_agent.core.chunk import SampleChunk, chunks_to_batch
from dataset_builder.format import DatasetError
from dataset_builder.read import open_raw
from dataset_builder.writer import RawDatasetWriter
w = RawDatasetWriter({str(tmp_path / "ds")!r}, row_group_rows=2000)
w.open()
w.set_catalog(records(6, ["a/b/c", "a/b/d"]))
rng = np.random.default_rng(0)
batches = [chunks_to_batch([SampleChunk.from_values(np.arange(20000) % 6, rng.normal(size=20000),
           source_time_ns=1_763_900_000_000_000_000 + (k * 20000 + np.arange(20000)) * 1000)]) for k in range(5)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
try:
    for seq, b in enumerate(batches):
        w.write("buf", seq, b)
    w.commit()
    raise SystemExit("no error")
except DatasetError as exc:
    assert exc.transient, exc
w.abort()
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
assert not list((w.root / "_staging").iterdir())
for seq, b in enumerate(batches):
    w.write("buf", seq, b)
w.commit()
t = open_raw(w.root).to_table()
assert t.num_rows == 100000, t.num_rows
assert len(set(t["time"].to_pylist())) == 100000
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(tmp_path))
