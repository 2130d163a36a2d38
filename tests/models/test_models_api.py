"""Python API end to end on real data (Tennessee Eastman): train, save, load, score."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import models
from models.errors import BundleError, InputMismatch, TrainingDataError
from models.features import windows

from .conftest import tep_frame


def test_bundle_round_trip_keeps_metadata_and_scores(tep_bundle, tep_train, tmp_path):
    d = tep_bundle.save(tmp_path / "m")
    assert sorted(p.name for p in d.iterdir()) == ["model.json", "model.onnx"]
    meta = json.loads((d / "model.json").read_text())
    assert [i["name"] for i in meta["inputs"]] == list(tep_train.columns[1:])
    assert meta["sampling_period_ns"] == 180 * 10**9
    assert meta["window"] == 3 and meta["hop"] == 1
    assert meta["threshold"]["rule"].startswith("quantile(holdout_scores")
    assert len(meta["training"]["fingerprint_sha256"]) == 64
    assert meta["onnx_opset"] == 17 and meta["axedge_version"]
    loaded = models.load(d)
    test = tep_frame("d01_te", slice(0, 300))
    a, b = tep_bundle.score(test), loaded.score(test)
    assert isinstance(a, pd.DataFrame) and len(a) == len(test)
    np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())
    assert a["score"].isna().sum() == 2  # the first window - 1 rows have no complete window


def test_onnx_bundle_scores_agree_with_python_reference(tep_train):
    from models.detectors import fit

    b = models.train(tep_train, kind="autoencoder", window=2, epochs=15)
    test = tep_frame("d06_te", slice(100, 400))
    vals = test.iloc[:, 1:].to_numpy()
    # refit the same detector (same seed, same split) to get the float64 reference
    split = int(round(len(tep_train) * 0.8))
    rows = tep_train.iloc[:split, 1:].to_numpy()
    det = fit("autoencoder", np.ascontiguousarray(windows(rows, 2)), rows, epochs=15)
    ref, _ = det.score_numpy(windows(vals, 2))
    got = b.score(test)["score"].to_numpy()[1:]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_detects_tep_fault_1_and_stays_quiet_on_normal_test_run(tep_bundle):
    normal = tep_bundle.score(tep_frame("d00_te"))
    fault = tep_bundle.score(tep_frame("d01_te"))
    far = normal["anomaly"].mean()
    detection = fault["anomaly"].to_numpy()[170:].mean()  # fault introduced after sample 160
    assert far < 0.15
    assert detection > 0.9


def test_contributions_name_the_disturbed_sensor(tep_bundle):
    test = tep_frame("d00_te", slice(0, 200))
    test.loc[100:, "xmeas_9"] += 10 * test["xmeas_9"].std()
    out = tep_bundle.contributions(test)
    hot = out[out["anomaly"]].iloc[5:]
    contrib_cols = [c for c in out.columns if c.startswith("contrib.")]
    assert len(hot) > 50
    top = hot[contrib_cols].to_numpy().argmax(axis=1)
    assert (np.array(contrib_cols)[top] == "contrib.xmeas_9").mean() > 0.9


def test_auto_records_its_choice_and_reason(tep_train):
    b = models.train(tep_train.iloc[:300], kind="auto", window=2, epochs=10)
    sel = b.meta["validation"]["selection"]
    assert sel["chosen"] == b.kind
    assert set(sel["candidates"]) == {"pca", "zscore", "autoencoder"}
    best = max(c["synthetic_detection_mean"] for c in sel["candidates"].values())
    assert sel["candidates"][b.kind]["synthetic_detection_mean"] >= best - 0.005


def test_missing_rows_give_no_score_never_an_invented_one(tep_bundle):
    test = tep_frame("d00_te", slice(0, 50))
    test.loc[20, "xmv_3"] = np.nan
    out = tep_bundle.score(pa.Table.from_pandas(test, preserve_index=False))
    score = out.column("score").to_numpy(zero_copy_only=False)
    assert np.isnan(score[20:23]).all() and not np.isnan(score[23])
    assert not any(out.column("anomaly").to_pylist()[20:23])


def test_scoring_data_without_a_model_signal_is_refused(tep_bundle):
    with pytest.raises(InputMismatch, match="xmv_11"):
        tep_bundle.score(tep_frame("d00_te", slice(0, 20)).drop(columns=["xmv_11"]))


def test_corrupt_or_incomplete_bundles_are_refused(tep_bundle, tmp_path):
    d = tep_bundle.save(tmp_path / "m")
    blob = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BundleError, match="sha256"):
        models.load(d)
    (d / "model.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        models.load(d)
    with pytest.raises(BundleError, match="cannot read"):
        models.load(tmp_path / "nowhere")


def test_too_little_data_is_a_training_error(tep_train):
    with pytest.raises(TrainingDataError, match="too few rows"):
        models.train(tep_train.iloc[:15])


def test_long_tables_are_fitted_on_a_bounded_subsample(tep_train):
    b = models.train(tep_train, kind="pca", window=2, max_fit_windows=100)
    assert b.meta["validation"]["fit_windows"] == 100
    assert b.meta["validation"]["holdout_windows"] == 99  # 100 held-out rows, window 2
