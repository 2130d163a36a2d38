"""Feature code: grid alignment, windows, table reading (pure logic)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from models.errors import InputMismatch, TrainingDataError
from models.features import align_to_grid, fingerprint, infer_period_ns, to_frame, valid_windows, windows


def test_align_takes_latest_value_and_marks_stale_and_unseen_as_nan():
    t = np.array([0, 10, 25, 5], dtype=np.int64)
    col = np.array([0, 0, 0, 1])
    v = np.array([1.0, 2.0, 3.0, 9.0])
    grid = np.array([0, 10, 20, 30, 60], dtype=np.int64)
    out = align_to_grid(t, col, v, grid, 3, max_age_ns=15)
    np.testing.assert_array_equal(out[:, 0], [1.0, 2.0, 2.0, 3.0, np.nan])  # 60 - 25 > 15: stale
    np.testing.assert_array_equal(out[:, 1], [np.nan, 9.0, 9.0, np.nan, np.nan])  # before first obs / stale
    assert np.isnan(out[:, 2]).all()  # never seen


def test_align_gap_observation_hides_older_value():
    out = align_to_grid(np.array([0, 10]), np.array([0, 0]), np.array([5.0, np.nan]), np.array([5, 15]), 1, max_age_ns=100)
    np.testing.assert_array_equal(out[:, 0], [5.0, np.nan])


def test_windows_end_at_each_row_and_reject_nan_and_time_gaps():
    vals = np.arange(12, dtype=float).reshape(6, 2)
    vals[3, 1] = np.nan
    w = windows(vals, 2)
    assert w.shape == (5, 2, 2)
    np.testing.assert_array_equal(w[0], vals[0:2])
    times = np.array([0, 1, 2, 3, 4, 9]) * 10
    ok = valid_windows(times, vals, 2, 10)
    np.testing.assert_array_equal(ok, [True, True, False, False, False])  # NaN row 3, gap 4->5


def test_to_frame_wide_sorts_by_time_and_keeps_units_from_metadata():
    schema = pa.schema([pa.field("time", pa.timestamp("us", tz="UTC")), pa.field("temp", pa.float64(), metadata={"unit": "degC"}), pa.field("n", pa.int32())])
    tbl = pa.table({"time": pa.array([2_000_000, 1_000_000], pa.timestamp("us", tz="UTC")), "temp": [2.0, 1.0], "n": pa.array([4, 3], pa.int32())}, schema=schema)
    f = to_frame(tbl)
    assert f.signals == ["temp", "n"]
    np.testing.assert_array_equal(f.times_ns, [1_000_000_000, 2_000_000_000])
    np.testing.assert_array_equal(f.values, [[1.0, 3.0], [2.0, 4.0]])
    assert f.units == {"temp": "degC", "n": None}


def test_to_frame_long_layout_pivots_onto_grid_and_drops_bad_quality():
    sec = 1_000_000_000
    df = pd.DataFrame(
        {
            "time": pd.to_datetime([0, 0, sec, sec, 2 * sec], unit="ns", utc=True),
            "signal": ["a", "b", "a", "b", "a"],
            "value": [1.0, 10.0, 2.0, 20.0, 3.0],
            "quality": np.array([0, 0, 0x80000000, 0, 0], dtype=np.uint32),
        }
    )
    f = to_frame(df)
    assert f.signals == ["a", "b"]
    np.testing.assert_array_equal(f.times_ns, [0, sec, 2 * sec])
    np.testing.assert_array_equal(f.values[:, 0], [1.0, np.nan, 3.0])
    np.testing.assert_array_equal(f.values[:, 1], [10.0, 20.0, 20.0])


def test_to_frame_errors_name_the_problem():
    df = pd.DataFrame({"time": [0.0, 1.0], "a": [1.0, 2.0]})
    with pytest.raises(InputMismatch, match="zz"):
        to_frame(df, ["zz"])
    with pytest.raises(TrainingDataError, match="time column"):
        to_frame(df, time_column="ts")
    with pytest.raises(TrainingDataError):
        infer_period_ns(np.array([5, 5]))


def test_fingerprint_changes_with_any_value():
    a = pd.DataFrame({"time": [0.0, 1.0], "x": [1.0, 2.0]})
    b = a.copy()
    b.loc[1, "x"] = 2.0000001
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(b)


def _naive_align(t, col, v, grid, n, max_age):
    out = np.full((len(grid), n), np.nan)
    for gi, g in enumerate(grid):
        for j in range(n):
            m = (col == j) & (t <= g)
            if m.any():
                k = np.nonzero(m & (t == t[m].max()))[0][-1]  # latest; on equal times the later row
                if g - t[k] <= max_age:
                    out[gi, j] = v[k]
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("epoch", [0, 1_700_000_000 * 10**9])
def test_vectorised_alignment_matches_a_naive_loop(seed, epoch):
    rng = np.random.default_rng(seed)
    n_obs, n_sig = 200, 4
    t = epoch + rng.integers(0, 10_000, n_obs)
    col = rng.integers(0, n_sig, n_obs)
    v = rng.normal(size=n_obs)
    v[rng.random(n_obs) < 0.1] = np.nan
    grid = epoch + np.arange(-500, 11_000, 250)
    got = align_to_grid(t, col, v, grid, n_sig, max_age_ns=700)
    np.testing.assert_array_equal(got, _naive_align(t, col, v, grid, n_sig, 700))


def test_alignment_falls_back_when_keys_would_overflow():
    t = np.array([0, 2**61], dtype=np.int64)
    out = align_to_grid(t, np.array([0, 3]), np.array([1.0, 2.0]), np.array([0, 2**61]), 4, max_age_ns=10)
    np.testing.assert_array_equal(out[:, 0], [1.0, np.nan])
    np.testing.assert_array_equal(out[:, 3], [np.nan, 2.0])


def test_text_timestamps_are_read_as_iso_8601_utc():
    naive = to_frame(pa.table({"time": ["2013-12-02 21:15:00", "2013-12-02T21:20:00"], "x": [1.0, 2.0]}))
    zoned = to_frame(pa.table({"time": ["2013-12-02T21:15:00Z", "2013-12-02T21:20:00+00:00"], "x": [1.0, 2.0]}))
    np.testing.assert_array_equal(naive.times_ns, [1386018900 * 10**9, 1386019200 * 10**9])
    np.testing.assert_array_equal(zoned.times_ns, naive.times_ns)
    with pytest.raises(TrainingDataError, match="ISO 8601"):
        to_frame(pa.table({"time": ["yesterday", "now"], "x": [1.0, 2.0]}))
