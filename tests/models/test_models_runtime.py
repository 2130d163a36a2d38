"""The edge scorer on a live stream of sample chunks (TEP runs replayed as chunks)."""

import json
import shutil

import numpy as np
import pytest

import models
from dataset_builder.format import Quality
from edge_agent.core.channel import BoundedChannel
from edge_agent.core.chunk import SampleChunk, chunks_to_batch
from edge_agent.signals import SignalCatalog, SignalSpec
from models.errors import InputMismatch, ModelError
from models.runtime import EdgeScorer

from .conftest import tep_frame

PERIOD = 180 * 10**9
QUEUE = 10_000  # room for every window: these tests check scores, not drops (see the last test)
T0 = 1_700_000_100 * 10**9  # on the 3-minute grid (9444445 * 180 s)


def catalog_for(names, units=None):
    cat = SignalCatalog()
    for n in names:
        cat.register(SignalSpec(name=n, asset="plant/tep/reactor", unit=(units or {}).get(n), connector="sim"))
    return cat


def chunks(df, cat, rows=None, drop=(), jitter_ns=2_000_000):
    """One chunk per row: every signal sampled a little after the grid time."""
    names = list(df.columns[1:])
    ids = np.array([cat.by_key(f"plant/tep/reactor/{n}").id for n in names])
    keep = np.array([n not in drop for n in names])
    for i in range(len(df)) if rows is None else rows:
        yield SampleChunk.from_values(ids[keep], df.iloc[i, 1:].to_numpy(float)[keep], source_time_ns=T0 + i * PERIOD + jitter_ns)


@pytest.fixture
def model_dir(tep_bundle, tmp_path):
    return tep_bundle.save(tmp_path / "model")


@pytest.fixture
def cat(tep_train):
    return catalog_for(tep_train.columns[1:])


async def test_stream_scores_match_offline_scores_and_fault_makes_one_event(model_dir, cat, tep_bundle):
    df = tep_frame("d01_te", slice(0, 400))
    scorer = EdgeScorer(model_dir, cat, max_queue_batches=QUEUE)
    scorer.start()
    channel = BoundedChannel(max_chunks=16, max_rows=10_000)
    events = []
    for c in chunks(df, cat):  # through a real bounded channel, as the agent hands them over
        await channel.send(c)
        events += scorer.process(await channel.recv())
    assert scorer.wait_idle()
    events += scorer.close()
    live = scorer.drain_scores().to_pandas()
    offline = tep_bundle.score(df)
    # grid time T0 + kP holds row k - 1 (sampled 2 ms after T0 + (k-1)P); grid rows are emitted
    # one period behind the newest sample (lateness); window - 1 rows have no complete window
    assert len(live) == len(df) - 2 - (tep_bundle.window - 1)
    np.testing.assert_array_equal((live["time"].astype("int64").to_numpy() - T0) // PERIOD, np.arange(3, 399))
    np.testing.assert_allclose(live["score"].to_numpy(), offline["score"].to_numpy()[2:-2], rtol=1e-5)
    fault_events = [e for e in events if e.start_ns >= T0 + 160 * PERIOD]
    assert fault_events, events
    big = max(fault_events, key=lambda e: e.windows)
    assert big.start_ns <= T0 + 180 * PERIOD and big.windows > 150
    assert big.peak_score > big.threshold and big.top_signals[0][1] > 0
    assert scorer.stats.windows_scored == len(live) and scorer.stats.events >= len(events)
    snap = scorer.stats.snapshot()
    assert snap["windows_scored"] == len(live) and snap["anomalous_windows"] > 150
    assert 0 < snap["latency_us_per_window"]["p50"] <= snap["latency_us_per_window"]["p99"]
    json.dumps(snap)  # metrics / health endpoints serialise it


async def test_stale_missing_and_bad_inputs_give_no_score_and_counted_reasons(model_dir, cat):
    df = tep_frame("d00_te", slice(0, 60))
    scorer = EdgeScorer(model_dir, cat, max_queue_batches=QUEUE)
    scorer.start()
    for c in chunks(df, cat, rows=range(0, 20)):
        scorer.process(c)
    for c in chunks(df, cat, rows=range(20, 40), drop=("xmeas_7",)):  # a sensor goes silent
        scorer.process(c)
    xid = cat.by_key("plant/tep/reactor/xmeas_1").id
    for c in chunks(df, cat, rows=range(40, 60)):
        if int(c.source_time_ns[0]) == T0 + 50 * PERIOD + 2_000_000:
            c.quality[c.signal_id == xid] = Quality.BAD_COMMUNICATION_ERROR
        scorer.process(c)
    assert scorer.wait_idle()
    scorer.close()
    skipped = scorer.stats.windows_skipped
    # grid k holds row k - 1. xmeas_7 is silent after row 19: its value is older than 3 periods
    # from grid 23 on, and fresh again at grid 41, so windows ending at 23..42 are not scored
    assert skipped["stale_input"] == 20
    assert skipped["bad_input"] == 3  # the bad sample of row 50 (grid 51) spoils 3 windows
    assert skipped["missing_input"] == 0
    scores = scorer.drain_scores().to_pandas()
    t = (scores["time"].astype("int64") - T0) // PERIOD
    assert not t.between(23, 42).any() and not t.between(51, 53).any()
    assert t.between(43, 50).sum() == 8 and t.between(3, 22).sum() == 20
    assert scorer.stats.windows_scored + sum(skipped.values()) == 60 - 2 - 2


async def test_hot_reload_swaps_good_bundle_and_refuses_bad_one(model_dir, cat, tep_train, tmp_path):
    df = tep_frame("d00_te", slice(0, 40))
    scorer = EdgeScorer(model_dir, cat, max_queue_batches=QUEUE)
    scorer.start()
    for c in chunks(df, cat, rows=range(0, 20)):
        scorer.process(c)
    assert scorer.reload() is False  # unchanged

    # a bad bundle: an input this agent does not have
    bad = models.train(tep_train.rename(columns={"xmv_2": "xmv_99"}), kind="zscore", window=3)
    bad.save(tmp_path / "bad")
    shutil.copy(tmp_path / "bad" / "model.onnx", model_dir / "model.onnx")
    shutil.copy(tmp_path / "bad" / "model.json", model_dir / "model.json")
    assert scorer.reload() is False
    assert "xmv_99" in scorer.last_reload_error and scorer.stats.reload_failures == 1
    assert scorer.model.kind == "pca"  # the old model keeps running
    for c in chunks(df, cat, rows=range(20, 30)):
        scorer.process(c)
    assert scorer.reload() is False and scorer.stats.reload_failures == 1  # not retried until it changes

    good = models.train(tep_train, kind="zscore", window=3)
    good.save(model_dir)
    assert scorer.reload() is True and scorer.model.kind == "zscore" and scorer.last_reload_error is None
    for c in chunks(df, cat, rows=range(30, 40)):
        scorer.process(c)
    assert scorer.wait_idle()
    scorer.close()
    assert set(scorer.drain_scores().column("model").to_pylist()) == {"pca", "zscore"}
    assert scorer.stats.windows_skipped == {"missing_input": 0, "stale_input": 0, "bad_input": 0}


def test_start_refuses_unit_mismatch_and_unknown_inputs(model_dir, tep_train, tep_bundle):
    units = {n: "degC" for n in tep_train.columns[1:]}
    with_units = models.Bundle(dict(tep_bundle.meta, inputs=[dict(i, unit="kPa") for i in tep_bundle.meta["inputs"]]), tep_bundle.onnx_bytes)
    with_units.save(model_dir)
    with pytest.raises(InputMismatch, match="unit 'kPa'"):
        EdgeScorer(model_dir, catalog_for(tep_train.columns[1:], units)).start()
    with pytest.raises(InputMismatch, match="not a signal"):
        EdgeScorer(model_dir, catalog_for(tep_train.columns[1:10])).start()


def test_full_queue_drops_oldest_windows_and_counts_them(model_dir, cat):
    df = tep_frame("d00_te", slice(0, 300))
    scorer = EdgeScorer(model_dir, cat, max_queue_batches=1)
    scorer.start()
    for c in chunks(df, cat):
        scorer.process(c)
    assert scorer.wait_idle()
    scorer.close()
    st = scorer.stats
    assert st.windows_enqueued == 300 - 2 - 2
    assert set(st.windows_dropped) <= {"queue_full"}
    assert st.windows_scored + st.windows_dropped.get("queue_full", 0) == st.windows_enqueued
    assert scorer.drain_scores().num_rows == st.windows_scored


def test_arrow_sample_batches_are_accepted(model_dir, cat, tep_bundle):
    df = tep_frame("d00_te", slice(0, 30))
    scorer = EdgeScorer(model_dir, cat, max_queue_batches=2)
    scorer.start()
    batch = chunks_to_batch(list(chunks(df, cat)))
    scorer.process(batch)
    assert scorer.wait_idle()
    scorer.close()
    st = scorer.stats
    assert st.samples_in == 30 * 52
    assert st.windows_enqueued == 30 - 2 - 2  # see the first test for the two-row lag
    assert st.windows_scored + sum(st.windows_dropped.values()) == st.windows_enqueued


async def test_long_windows_and_hop_follow_the_bundle(tep_train, cat, tmp_path):
    b = models.train(tep_train, kind="zscore", window=6, hop=4)
    b.save(tmp_path / "m6")
    df = tep_frame("d02_te", slice(0, 80))
    scorer = EdgeScorer(tmp_path / "m6", cat, max_queue_batches=QUEUE)
    scorer.start()
    for c in chunks(df, cat):
        scorer.process(c)
    assert scorer.wait_idle()
    scorer.close()
    live = scorer.drain_scores().to_pandas()
    k = (live["time"].astype("int64").to_numpy() - T0) // PERIOD
    np.testing.assert_array_equal(k, np.arange(6, 79, 4))  # first full window ends at grid 6
    offline = b.score(df)["score"].to_numpy()
    np.testing.assert_allclose(live["score"].to_numpy(), offline[k - 1], rtol=1e-5)


class _BrokenSession:
    """Failure injection: an ONNX Runtime session whose inference fails."""

    def run(self, *_):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : out of memory")


def test_inference_failure_is_counted_and_raised_on_the_event_loop(model_dir, cat):
    df = tep_frame("d00_te", slice(0, 20))
    scorer = EdgeScorer(model_dir, cat, max_queue_batches=QUEUE)
    scorer.start()
    scorer.model._session = _BrokenSession()
    feed = chunks(df, cat)
    for _ in range(6):  # enough rows for the first windows
        scorer.process(next(feed))
    scorer._worker.join(10)  # the worker stops at the failure
    assert not scorer._worker.is_alive()
    with pytest.raises(ModelError, match="inference failed in the worker: .*out of memory"):
        scorer.process(next(feed))
    assert scorer.stats.errors == {"RuntimeError": 1}
    scorer.close(timeout_secs=1)  # returns although nobody drains the queue any more


async def test_current_event_shows_an_anomaly_in_progress(model_dir, cat):
    df = tep_frame("d01_te", slice(0, 260))
    scorer = EdgeScorer(model_dir, cat, max_queue_batches=QUEUE)
    scorer.start()
    for c in chunks(df, cat):
        scorer.process(c)
    assert scorer.wait_idle()
    ev = scorer.current_event()
    assert ev is not None and ev.start_ns >= T0 + 160 * PERIOD and ev.end_ns >= T0 + 250 * PERIOD
    assert ev.peak_score > ev.threshold and len(ev.top_signals) == 3
    closed = scorer.close()
    assert closed and closed[-1].start_ns == ev.start_ns and scorer.current_event() is None


def test_undrained_scores_are_dropped_oldest_first_and_counted(model_dir, cat):
    df = tep_frame("d00_te", slice(0, 60))
    scorer = EdgeScorer(model_dir, cat, max_queue_batches=QUEUE, max_pending_score_batches=10)
    scorer.start()
    for c in chunks(df, cat):  # one window per chunk: 56 score batches, room for 10
        scorer.process(c)
    assert scorer.wait_idle()
    scorer.close()
    kept = scorer.drain_scores()
    assert kept.num_rows == 10
    assert scorer.stats.results_dropped == {"scores": 46}
    k = (kept.column("time").cast("int64").to_numpy() - T0) // PERIOD
    np.testing.assert_array_equal(k, np.arange(49, 59))  # the newest survive


def _tracked(alarm_pattern: str, times_ms=None, on=1, off=1):
    """Feed ``_track`` a pattern of windows ('x' anomalous, '.' normal) 200 ms apart; events as (start, end) ms."""
    from types import SimpleNamespace

    sc = EdgeScorer("unused", SignalCatalog(), on_delay_windows=on, off_delay_windows=off)
    m = SimpleNamespace(hop=1, period=200_000_000, name="m", threshold=1.0, bundle=SimpleNamespace(signals=["a", "b"]))
    n = len(alarm_pattern)
    t = np.array(times_ms if times_ms is not None else [200 * i for i in range(n)], dtype=np.int64) * 1_000_000
    alarm = np.array([c == "x" for c in alarm_pattern])
    score = np.where(alarm, 2.0, 0.1)
    contrib = np.tile([0.7, 0.3], (n, 1))
    sc._track(m, t, score, contrib, alarm)
    sc._end_run()
    return [(e.start_ns // 1_000_000, e.end_ns // 1_000_000) for e in sc.drain_events()]


def test_on_delay_filters_short_spikes_and_dates_the_event_from_its_first_window():
    pattern = "..x....xx...xxx....xxxxx.."
    assert _tracked(pattern) == [(400, 400), (1400, 1600), (2400, 2800), (3800, 4600)]
    assert _tracked(pattern, on=3) == [(2400, 2800), (3800, 4600)]


def test_off_delay_keeps_a_flickering_anomaly_one_event():
    pattern = "..xxx.xx..xxx......x"
    assert _tracked(pattern) == [(400, 800), (1200, 1400), (2000, 2400), (3800, 3800)]
    assert _tracked(pattern, off=3) == [(400, 2400), (3800, 3800)]


def test_a_gap_in_scored_windows_ends_the_event():
    # windows 0..4 anomalous, then nothing scored for 1.8 s, then anomalous again: two events
    times = [0, 200, 400, 600, 800, 2600, 2800, 3000]
    assert _tracked("xxxxxxxx", times) == [(0, 800), (2600, 3000)]
    assert _tracked("xxxxxxxx", times, off=10) == [(0, 800), (2600, 3000)]
