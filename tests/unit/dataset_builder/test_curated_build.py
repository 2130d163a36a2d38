"""Curated build: resampling, fill limit, gap flags, bad input, cycles, labels, splits, engines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from dataset_builder.curate import BAD, FILLED, MISSING, OBSERVED, build
from dataset_builder.format import Quality, DatasetError
from tests.dataset.rawgen import DAY0_NS, SEC, record, samples, write_raw

A = "acme/plant1/line1/press"
B = "acme/plant1/line2/oven"


def curated(out, asset=A):
    part = asset.replace("/", ".")
    return ds.dataset(out / "curated", partitioning="hive").to_table(
        filter=ds.field("asset") == part).sort_by("time").to_pandas()


def pylist(series) -> list:
    return [None if pd.isna(x) else x for x in series]


def test_aggregations_match_pandas_resample(tmp_path):
    rng = np.random.default_rng(7)
    cat = [record(0, A, "t_mean"), record(1, A, "t_last", mean_agg=False), record(2, A, "t_min"), record(3, A, "t_max")]
    n = 4000
    # irregular sampling, several samples per 10 s period, in random file order
    times = DAY0_NS + np.sort(rng.integers(0, 3600 * SEC, n)) // 1000 * 1000
    vals = rng.normal(size=n)
    batches = [samples(np.full(n, i), times, vals) for i in range(4)]
    write_raw(tmp_path / "raw", cat, batches[::-1])
    build(tmp_path / "raw", tmp_path / "out", period="10s", fill_limit="0s", embargo="0s",
          aggregations={"t_last": "last", "t_min": "min", "t_max": "max"})
    got = curated(tmp_path / "out").set_index("time")
    s = pd.Series(vals, index=pd.to_datetime(times, utc=True)).groupby(level=0).last()
    r = s.resample("10s")
    for col, want in (("t_mean", r.mean()), ("t_last", r.last()), ("t_min", r.min()), ("t_max", r.max())):
        want = want.reindex(got.index)
        np.testing.assert_allclose(got[col].to_numpy(), want.to_numpy(), rtol=1e-12, equal_nan=True)
        assert ((got[col + "__state"] == OBSERVED) == want.notna()).all()


def test_forward_fill_stops_at_limit_and_gaps_are_flagged(tmp_path):
    cat = [record(0, A, "temp"), record(1, A, "pressure", unit="bar")]
    secs = np.r_[0:10, 13:20, 40:50]  # a 3 s gap (filled) and a 20 s gap (5 filled, 15 missing)
    t = DAY0_NS + secs * SEC
    write_raw(tmp_path / "raw", cat, [samples(np.zeros(len(t)), t, secs.astype(float)),
                                      samples(np.ones(len(t)), t, secs.astype(float))])
    build(tmp_path / "raw", tmp_path / "out", period="1s", fill_limit="5s", embargo="0s")
    df = curated(tmp_path / "out")
    assert len(df) == 50
    st = df["temp__state"].to_numpy()
    v = df["temp"].to_numpy()
    assert (st[10:13] == FILLED).all() and (v[10:13] == 9).all()
    assert (st[20:25] == FILLED).all() and (v[20:25] == 19).all()
    assert (st[25:40] == MISSING).all() and np.isnan(v[25:40]).all()
    assert (st[secs] == OBSERVED).all()
    meta = json.loads((tmp_path / "out/_axedge/dataset.json").read_text())
    sig = {s["name"]: s for s in meta["signals"]}
    assert sig["temp"]["stats"]["filled"] == 8 and sig["temp"]["stats"]["missing"] == 15
    assert sig["temp"]["stats"]["longest_gap_rows"] == 15 and sig["temp"]["ucum"] == "Cel"
    assert sig["pressure"]["unece"] == "BAR"
    [outage] = meta["assets"][0]["outages"]
    assert outage["rows"] == 15 and outage["start"] == "2025-11-23T00:00:25Z"
    assert "2025-11-23T00:00:25Z" in (tmp_path / "out/README.md").read_text()


def test_bad_quality_is_flagged_and_never_filled_across(tmp_path):
    cat = [record(0, A, "temp")]
    secs = np.arange(10)
    q = np.where(secs == 4, Quality.BAD_TIMEOUT, 0)
    q = np.where(secs == 7, Quality.UNCERTAIN, q)  # uncertain is usable
    vals = secs.astype(float)
    keep = secs != 5
    write_raw(tmp_path / "raw", cat, [samples(np.zeros(keep.sum()), DAY0_NS + secs[keep] * SEC, vals[keep],
                                              quality=q[keep])])
    build(tmp_path / "raw", tmp_path / "out", period="1s", fill_limit="5s", embargo="0s")
    df = curated(tmp_path / "out")
    assert df["temp__state"].tolist() == [0, 0, 0, 0, BAD, MISSING, 0, 0, 0, 0]
    assert np.isnan(df["temp"][4]) and np.isnan(df["temp"][5]) and df["temp"][7] == 7
    meta = json.loads((tmp_path / "out/_axedge/dataset.json").read_text())
    assert meta["issues"]["bad_quality_rows"] == 1


def test_duplicates_conflicts_out_of_order_unknown_and_text_are_counted(tmp_path):
    cat = [record(0, A, "temp")]
    t = DAY0_NS + np.arange(20) * SEC
    base = samples(np.zeros(20), t, np.arange(20.0))
    # replayed overlap: the same rows again (from another buffer), later received
    dup = samples(np.zeros(5), t[:5], np.arange(5.0), receive_ns=t[:5] + 10 * SEC)
    # a conflicting correction for second 7, received later: it wins
    conflict = samples([0], t[7:8], [70.0], receive_ns=t[7:8] + 60 * SEC)
    # out-of-order file: earlier times written last; an unknown signal id; text in a numeric signal
    late = samples([0, 0, 9, 0], [t[0] - 2 * SEC, t[0] - SEC, t[3], t[0] - 3 * SEC], [-2.0, -1.0, 5.0, np.nan],
                   text=[None, None, None, "E42"])
    write_raw(tmp_path / "raw", cat, [base, dup, conflict, late])
    build(tmp_path / "raw", tmp_path / "out", period="1s", fill_limit="0s", embargo="0s")
    df = curated(tmp_path / "out")
    assert df["time"].iloc[0].value // 1000 == (DAY0_NS - 3 * SEC) // 1000
    got = dict(zip((df["time"].astype("int64") // 10**6 - DAY0_NS // SEC).tolist(), df["temp"].tolist()))
    assert got[-2] == -2.0 and got[-1] == -1.0 and got[7] == 70.0 and got[8] == 8.0
    assert np.isnan(got[-3])  # only text arrived for that second
    issues = json.loads((tmp_path / "out/_axedge/dataset.json").read_text())["issues"]
    assert issues["duplicate_rows"] == 5
    assert issues["conflicting_rows"] == 1
    assert issues["out_of_order_rows"] >= 1
    assert issues["unknown_signal_rows"] == 1
    assert issues["text_in_numeric_rows"] == 1


def test_empty_time_range_and_unknown_assets_are_errors(tmp_path):
    cat = [record(0, A, "temp")]
    write_raw(tmp_path / "raw", cat, [samples([0, 0], DAY0_NS + np.array([0, SEC]), [1.0, 2.0])])
    with pytest.raises(DatasetError, match="no raw data"):
        build(tmp_path / "raw", tmp_path / "o1", start="2030-01-01T00:00:00Z")
    with pytest.raises(DatasetError, match="no raw data"):
        build(tmp_path / "raw", tmp_path / "o2", assets=["other/asset"])
    build(tmp_path / "raw", tmp_path / "o3", embargo="0s")
    with pytest.raises(DatasetError, match="exists"):
        build(tmp_path / "raw", tmp_path / "o3")


def test_days_are_partitions_and_fill_carries_over_midnight(tmp_path):
    cat = [record(0, A, "temp"), record(1, B, "temp")]
    day = 86_400 * SEC
    t = DAY0_NS + day - 3 * SEC + np.array([0, 1, 2, 5, 6]) * SEC  # 23:59:57..59, then 00:00:02..03
    write_raw(tmp_path / "raw", cat, [samples(np.zeros(5), t, np.arange(5.0)), samples(np.ones(5), t, np.arange(5.0))])
    build(tmp_path / "raw", tmp_path / "out", period="1s", fill_limit="2s", embargo="0s", workers=2)
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out/curated").rglob("*.parquet"))
    assert files == [f"curated/asset={a}/date={d}/part-0.parquet" for a in ("acme.plant1.line1.press",
                     "acme.plant1.line2.oven") for d in ("2025-11-23", "2025-11-24")]
    df = curated(tmp_path / "out")
    assert df["temp"].tolist() == [0, 1, 2, 3, 4]
    day2 = pq.read_table(tmp_path / "out" / files[1]).to_pandas()
    assert day2["temp"].tolist() == [3.0, 4.0]  # grid starts at the first sample of the day


def test_cycles_from_counter_with_features_labels_and_splits(tmp_path):
    cat = [record(0, A, "parts", unit="count", dtype="int64"), record(1, A, "force", unit="kN")]
    n = 600
    secs = np.arange(n)
    counter = secs // 30  # a part every 30 s
    force = np.sin(secs / 7.0) * 10
    t = DAY0_NS + secs * SEC
    write_raw(tmp_path / "raw", cat, [samples(np.zeros(n), t, counter.astype(float)), samples(np.ones(n), t, force)])
    ev = tmp_path / "truth.jsonl"
    ev.write_text(json.dumps({"start": "2025-11-23T00:02:05Z", "end": "2025-11-23T00:02:40Z", "kind": "jam",
                              "signals": [f"{A}/force"]}) + "\n"
                  + json.dumps({"start": 0, "end": 1, "kind": "other_asset", "asset": B}) + "\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("start,end,kind\n2025-11-23T00:09:00Z,2025-11-23T00:09:01Z,inspected\n")
    res = build(tmp_path / "raw", tmp_path / "out", period="1s", cycles={"signal": "parts", "mode": "counter"},
                events=[ev], labels=[labels], split_fractions=(0.5, 0.25, 0.25), embargo="30s")
    cyc = ds.dataset(tmp_path / "out/cycles", partitioning="hive").to_table().sort_by("cycle_start").to_pandas()
    assert len(cyc) == 20 and res.metadata["assets"][0]["cycles"] == 20
    assert cyc["complete"].tolist() == [False] + [True] * 18 + [False]
    assert (cyc["duration_s"] == 30).all() and cyc["value"].tolist() == [str(i) for i in range(20)]
    for k, row in cyc.iterrows():
        seg = force[k * 30:(k + 1) * 30]
        assert row["force__mean"] == pytest.approx(seg.mean()) and row["force__max"] == pytest.approx(seg.max())
        assert row["force__std"] == pytest.approx(seg.std(), abs=1e-9)
    # jam 00:02:05-00:02:40 overlaps cycles 4 (120-150 s) and 5 (150-180 s)
    assert pylist(cyc["label"])[3:7] == [None, "jam", "jam", None]
    assert cyc["label"][18] == "inspected"
    df = curated(tmp_path / "out")
    assert df["label"][125:160].eq("jam").all() and df["label"][:125].isna().all() and df["label"][160:].notna().sum() == 1
    # splits: 0-300 s train, 300-450 validation, 450- test; 30 s embargo after each boundary
    sp = pylist(df["split"])
    assert set(sp[:300]) == {"train"} and set(sp[300:330]) == {None} and set(sp[330:450]) == {"validation"}
    assert set(sp[450:480]) == {None} and set(sp[480:]) == {"test"}
    # no cycle in two splits; cycles touching a boundary or embargo have none
    assert pylist(cyc["split"])[9:12] == ["train", None, "validation"]
    assert pd.Series(df["cycle_start"]).notna().all()
    events = pq.read_table(tmp_path / "out/events/events.parquet").to_pandas()
    assert sorted(events["source"]) == ["ground_truth", "ground_truth", "label"]


def test_state_cycles_on_text_signal_and_engine_workers_agree(tmp_path):
    cat = [record(0, A, "phase", unit=None, dtype="string"), record(1, A, "power", unit="kW")]
    phases = (["idle"] * 10 + ["cut"] * 20 + ["idle"] * 5 + ["cut"] * 15) * 2
    n = len(phases)
    t = DAY0_NS + np.arange(n) * SEC
    write_raw(tmp_path / "raw", cat, [samples(np.zeros(n), t, None, text=phases),
                                      samples(np.ones(n), t, np.arange(n, dtype=float))])
    kw = dict(period="1s", cycles={"signal": "phase", "mode": "state", "active": ["cut"]}, embargo="0s")
    build(tmp_path / "raw", tmp_path / "w1", workers=1, **kw)
    build(tmp_path / "raw", tmp_path / "w2", workers=2, **kw)
    cyc = pq.read_table(next((tmp_path / "w1/cycles").rglob("*.parquet"))).to_pandas()
    assert cyc["rows"].tolist() == [20, 15, 20, 15] and set(cyc["value"]) == {"cut"}
    assert cyc["power__mean"].tolist() == [19.5, 42.0, 69.5, 92.0]
    for sub in ("curated", "cycles"):
        for p in (tmp_path / "w1" / sub).rglob("*.parquet"):
            assert p.read_bytes() == (tmp_path / "w2" / p.relative_to(tmp_path / "w1")).read_bytes()


def test_a_cycle_across_midnight_is_one_whole_cycle_on_the_day_it_started(tmp_path):
    cat = [record(0, A, "parts", unit="count", dtype="int64"), record(1, A, "force", unit="kN")]
    secs = np.arange(-95, 95)  # around midnight; a part every 40 s, one from -15 s to +25 s
    t = DAY0_NS + 86_400 * SEC + secs * SEC
    counter = (secs + 95) // 40
    write_raw(tmp_path / "raw", cat, [samples(np.zeros(len(t)), t, counter.astype(float)),
                                      samples(np.ones(len(t)), t, secs.astype(float))])
    build(tmp_path / "raw", tmp_path / "out", period="1s", cycles={"signal": "parts"}, embargo="0s", max_cycle="2min")
    d1 = pq.read_table(tmp_path / "out/cycles/asset=acme.plant1.line1.press/date=2025-11-23/part-0.parquet").to_pandas()
    d2 = pq.read_table(tmp_path / "out/cycles/asset=acme.plant1.line1.press/date=2025-11-24/part-0.parquet").to_pandas()
    assert d1["value"].tolist() == ["0", "1", "2"] and d2["value"].tolist() == ["3", "4"]
    across = d1.iloc[2]
    assert across["complete"] and across["rows"] == 40 and across["duration_s"] == 40
    assert across["force__mean"] == pytest.approx(np.arange(-15, 25).mean())
    assert d1["complete"].tolist() == [False, True, True] and d2["complete"].tolist() == [True, False]
    rows2 = curated(tmp_path / "out")
    rows2 = rows2[rows2["time"] >= pd.Timestamp("2025-11-24", tz="UTC")]
    assert (rows2["cycle_start"].iloc[:25] == pd.Timestamp("2025-11-23T23:59:45Z")).all()
