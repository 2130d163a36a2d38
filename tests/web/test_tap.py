"""LastValues: vectorised last value per signal and bounded history (pure logic, no sockets)."""

import numpy as np
import pyarrow as pa
import pytest

from dataset_builder.format import SAMPLE_SCHEMA, Quality
from edge_agent.web.api import quality_label
from edge_agent.web.tap import LastValues

S = 1_000_000_000


def batch(ids, t_secs, values, quality=None, texts=None) -> pa.RecordBatch:
    n = len(ids)
    t = pa.array((np.asarray(t_secs, dtype=np.float64) * S).astype(np.int64), pa.int64()).cast(SAMPLE_SCHEMA.field("source_time").type)
    return pa.RecordBatch.from_arrays([
        pa.array(ids, pa.int32()), t, pa.nulls(n, SAMPLE_SCHEMA.field("server_time").type), t,
        pa.array(values, pa.float64()), pa.array(texts if texts is not None else [None] * n, pa.string()),
        pa.array(quality if quality is not None else [0] * n, pa.uint32()),
    ], schema=SAMPLE_SCHEMA)


def test_last_value_is_the_latest_source_time_per_signal_not_the_last_row():
    lv = LastValues()
    lv.update(batch([0, 1, 0, 1, 0], [3, 1, 1, 2, 2], [30.0, 10.0, 11.0, 20.0, 21.0]))
    assert lv.snapshot(0)["value"] == 30.0 and lv.snapshot(0)["time_ns"] == 3 * S
    assert lv.snapshot(1)["value"] == 20.0
    assert lv.snapshot(0)["count"] == 3 and lv.snapshot(1)["count"] == 2
    assert lv.snapshot(2) is None and lv.snapshot(999) is None


def test_a_late_batch_does_not_hide_a_newer_value_but_is_counted():
    lv = LastValues()
    lv.update(batch([0], [10], [1.0]))
    lv.update(batch([0], [5], [2.0]))
    s = lv.snapshot(0)
    assert s["value"] == 1.0 and s["count"] == 2


def test_bad_quality_gap_rows_show_as_null_with_their_code():
    lv = LastValues()
    lv.update(batch([4, 4], [1, 2], [7.0, None], quality=[0, int(Quality.BAD_TIMEOUT)]))
    s = lv.snapshot(4)
    assert s["value"] is None and s["quality"] == Quality.BAD_TIMEOUT
    assert quality_label(s["quality"]) == ("bad", "bad_timeout")
    assert quality_label(0) == ("good", "good")
    assert quality_label(0x40AB0000) == ("uncertain", "0x40ab0000")


def test_history_keeps_one_point_per_step_and_is_bounded():
    lv = LastValues(history=5, min_step_secs=1.0)
    for k in range(40):  # 4 batches a second for 10 s
        lv.update(batch([0, 1], [k * 0.25, k * 0.25], [float(k), -float(k)]))
    h = lv.snapshot(0)["history"]
    assert len(h) == 5
    assert [p[1] for p in h] == [20.0, 24.0, 28.0, 32.0, 36.0]  # oldest first, 1 s apart
    assert [p[0] for p in h] == [5000, 6000, 7000, 8000, 9000]  # ms
    assert [p[1] for p in lv.snapshot(1)["history"]] == [-20.0, -24.0, -28.0, -32.0, -36.0]


def test_text_values_are_kept_and_truncated():
    lv = LastValues()
    lv.update(batch([0, 0, 1], [1, 2, 1], [None, None, 3.0], texts=["a", "b" * 1000, None]))
    assert lv.snapshot(0)["text"].startswith("bbb") and len(lv.snapshot(0)["text"]) == 512
    assert lv.snapshot(1)["text"] is None


def test_grows_with_new_signal_ids():
    lv = LastValues()
    lv.update(batch([0], [1], [1.0]))
    lv.update(batch([5000], [1], [2.0]))
    assert len(lv) == 5001 and lv.snapshot(5000)["value"] == 2.0 and lv.snapshot(0)["value"] == 1.0


def test_history_must_be_positive():
    with pytest.raises(ValueError):
        LastValues(history=0)
