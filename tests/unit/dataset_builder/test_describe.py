"""describe(): counts, quality, gaps and the manifest consistency check on a written dataset."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq

from dataset_builder.describe import describe, format_describe
from dataset_builder.format import Quality
from dataset_builder.writer import RawDatasetWriter

T0 = 1_763_900_000_000_000_000
SEC = 1_000_000_000


def _dataset(tmp_path, recs, mk):
    cat = recs(2, ["acme/p1/line1/press"])
    w = RawDatasetWriter(tmp_path / "ds", provenance={"gateway": "gw-7"})
    w.open()
    w.set_catalog(cat)
    # signal 0: every second for 100 s, seconds 40..49 missing (one 11 s gap)
    t0 = np.array([t for t in range(100) if not 40 <= t < 50])
    # signal 1: every 2 s for 100 s; rows 10..14 bad (one run of 5), rows 20, 21 uncertain
    t1 = np.arange(0, 100, 2)
    q1 = np.zeros(t1.size, np.uint32)
    q1[10:15] = Quality.BAD_TIMEOUT
    q1[20:22] = Quality.UNCERTAIN
    w.write("b", 0, mk(np.zeros(t0.size, int), T0 + t0 * SEC))
    w.commit()
    w.write("b", 1, mk(np.ones(t1.size, int), T0 + t1 * SEC, quality=q1))
    w.close()
    return w.root


def test_describe_counts_quality_and_gaps(tmp_path, recs, mk):
    root = _dataset(tmp_path, recs, mk)
    d = describe(root)
    assert d["rows"] == 90 + 50 and d["files"] == 2
    assert d["bytes"] == sum(p.stat().st_size for p in (root / "raw").rglob("*.parquet"))
    assert d["quality"] == {"good": 90 + 43, "uncertain": 2, "bad": 5}
    assert d["time_min"].startswith("2025-11-23T12:13:20") and d["time_max"].startswith("2025-11-23T12:14:59")
    s0, s1 = d["signals"]
    assert (s0["key"], s0["rows"], s0["unit"], s0["median_interval_secs"], s0["time_gaps"]) == (
        "acme/p1/line1/press/sig0", 90, "degC", 1.0, 1)
    assert (s1["rows"], s1["bad"], s1["uncertain"], s1["median_interval_secs"], s1["time_gaps"]) == (50, 5, 2, 2.0, 0)
    assert d["gap_count"] == {"time_gaps": 1, "bad_quality_runs": 1}
    kinds = {(g["signal"][-4:], g["kind"]): g for g in d["gaps"]}
    assert kinds[("sig0", "time_gap")]["duration_secs"] == 11.0
    assert kinds[("sig1", "bad_quality")]["rows"] == 5
    assert kinds[("sig1", "bad_quality")]["duration_secs"] == 8.0
    assert d["manifest"]["ok"] and d["manifest"]["commits"] == 2 and d["buffers"] == {"b": [0, 1]}
    text = format_describe(d)
    for needle in ("gw-7", "rows 140", "acme/p1/line1/press/sig0", "time_gap", "bad_quality", "manifest  OK"):
        assert needle in text, needle


def test_describe_reports_missing_unlisted_and_changed_files(tmp_path, recs, mk):
    root = _dataset(tmp_path, recs, mk)
    files = sorted((root / "raw").rglob("*.parquet"))
    assert describe(root, verify=True)["manifest"]["ok"]
    # rewritten with other settings: still readable, but not the committed bytes
    pq.write_table(pq.read_table(files[0]), files[0], compression="snappy")
    m = describe(root, verify=True)["manifest"]
    assert not m["ok"] and m["checksum_mismatch"] == [files[0].relative_to(root).as_posix()]
    assert describe(root)["manifest"]["ok"]  # without verify only presence is checked
    stray = files[1].with_name("part-copied.parquet")
    shutil.copy(files[1], stray)
    files[1].unlink()
    d = describe(root)
    assert d["manifest"]["missing"] == [files[1].relative_to(root).as_posix()]
    assert d["manifest"]["unlisted"] == [stray.relative_to(root).as_posix()]
    assert "PROBLEM" in format_describe(d)
