"""The commit manifest: one JSON line per commit; only a torn *last* line is tolerated."""

from __future__ import annotations

import pytest

from dataset_builder.format import DatasetError
from dataset_builder.manifest import append_entry, read_manifest, staged_path, watermarks


def _entry(i, bufs):
    return {"v": 1, "commit": f"c{i}", "files": [], "buffers": bufs}


def test_append_and_read_round_trip_with_watermarks(tmp_path):
    m = tmp_path / "manifest.jsonl"
    assert read_manifest(m).entries == []
    append_entry(m, _entry(0, {"a": [0, 4]}))
    append_entry(m, _entry(1, {"a": [5, 9], "b": [0, 0]}))
    st = read_manifest(m)
    assert [e["commit"] for e in st.entries] == ["c0", "c1"] and st.torn_tail is None
    assert st.valid_size == m.stat().st_size
    assert watermarks(st.entries) == {"a": 9, "b": 0}
    assert m.read_text().count("\n") == 2


@pytest.mark.parametrize("tail", [b'{"v": 1, "commit": "c2", "fil', b"\x00\x00\x00\x00", b'{"v": 1}\n', b"garbage\n"])
def test_torn_or_garbled_last_line_is_not_a_commit(tmp_path, tail):
    m = tmp_path / "manifest.jsonl"
    append_entry(m, _entry(0, {"a": [0, 1]}))
    good = m.stat().st_size
    with open(m, "ab") as f:
        f.write(tail)
    st = read_manifest(m)
    assert [e["commit"] for e in st.entries] == ["c0"]
    assert st.torn_tail == tail and st.valid_size == good


def test_garbled_line_before_the_end_is_corruption(tmp_path):
    m = tmp_path / "manifest.jsonl"
    append_entry(m, _entry(0, {"a": [0, 1]}))
    with open(m, "ab") as f:
        f.write(b"not json\n")
    append_entry(m, _entry(2, {"a": [2, 3]}))
    with pytest.raises(DatasetError, match="line 2"):
        read_manifest(m)


def test_staged_path_is_derived_from_the_final_basename():
    assert staged_path("raw/asset=a.b/date=2026-01-02/part-x-1234abcd.parquet") == "_staging/part-x-1234abcd.parquet.tmp"
