"""import-csv on the real public datasets in ../shared/data (NAB, TEP, CNC milling), then build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from dataset_builder.curate import build
from dataset_builder.format import DatasetError
from dataset_builder.importer import import_csv, load_mapping
from dataset_builder.read import open_raw, read_catalog

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data"
MAPS = REPO / "examples" / "mappings"
NAB = DATA / "nab/data/realKnownCause/machine_temperature_system_failure.csv"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not present")


def test_nab_machine_temperature_round_trips_and_reimport_is_a_noop(tmp_path):
    res = import_csv([NAB], MAPS / "nab_machine_temperature.yaml", tmp_path / "raw")
    csv = pd.read_csv(NAB)
    assert res.rows == len(csv) == 22695 and res.empty_cells == 0
    t = open_raw(tmp_path / "raw").to_table().sort_by("time")
    want_t = pd.to_datetime(csv["timestamp"]).dt.tz_localize("UTC").dt.as_unit("us").astype("int64")
    np.testing.assert_array_equal(pc.cast(t["time"], pa.int64()).to_numpy(), np.sort(want_t.to_numpy()))
    np.testing.assert_allclose(t["value"].to_numpy(), csv.sort_values("timestamp", kind="stable")["value"].to_numpy())
    cat = read_catalog(tmp_path / "raw").to_pylist()
    assert [(c["key"], c["unit"], c["dtype"]) for c in cat] == [
        ("numenta/nab/plant/machine_machine_temperature_system_failure/temperature", "degF", "float64")]
    again = import_csv([NAB], MAPS / "nab_machine_temperature.yaml", tmp_path / "raw")
    assert again.rows == len(csv)  # read again, but every batch is a committed replay
    assert open_raw(tmp_path / "raw").count_rows() == len(csv)

    # NAB's labelled anomaly windows as a label file
    windows = json.loads((DATA / "nab/labels/combined_windows.json").read_text()
                         if (DATA / "nab/labels/combined_windows.json").exists() else "{}")
    win = windows.get("realKnownCause/machine_temperature_system_failure.csv") or [
        ["2013-12-10 06:25:00", "2013-12-12 05:35:00"]]
    lab = tmp_path / "labels.jsonl"
    lab.write_text("".join(json.dumps({"start": a.replace(" ", "T") + "Z", "end": b.replace(" ", "T") + "Z",
                                       "kind": "anomaly"}) + "\n" for a, b in win))
    out = build(tmp_path / "raw", tmp_path / "out", period="5min", labels=[lab])
    meta = out.metadata
    [sig] = meta["signals"]
    assert sig["ucum"] == "[degF]" and sig["unece"] == "FAH"
    assert sig["stats"]["raw_rows"] == len(csv)
    df = ds.dataset(tmp_path / "out/curated", partitioning="hive").to_table().to_pandas()
    assert df["label"].notna().sum() > 0 and df["temperature__state"].isin([0, 1, 2, 3]).all()
    assert abs(df["temperature"].mean() - csv["value"].mean()) < 1.0


def test_tep_whitespace_files_without_header_or_time(tmp_path):
    files = [DATA / "tep/d01_te.dat", DATA / "tep/d00_te.dat"]
    res = import_csv(files, MAPS / "tep.yaml", tmp_path / "raw")
    assert res.signals == 104 and res.rows == 2 * 960 * 52
    t = open_raw(tmp_path / "raw").to_table(filter=ds.field("signal") == "eastman/tep/reactor_unit/d01_te/xmv_11")
    t = t.sort_by("time")
    raw = np.loadtxt(files[0])
    np.testing.assert_allclose(t["value"].to_numpy(), raw[:, 51])
    us = pc.cast(t["time"], pa.int64()).to_numpy()
    assert (np.diff(us) == 180_000_000).all()
    out = build(tmp_path / "raw", tmp_path / "out", period="3min", embargo="0s")
    assert out.rows == 1920
    sig = {s["key"].rsplit("/", 1)[1]: s for s in out.metadata["signals"] if "d01_te" in s["key"]}
    assert sig["xmeas_9"]["ucum"] == "Cel" and sig["xmeas_30"]["unit"] == "mol%"
    assert sig["xmeas_1"]["stats"]["mean"] == pytest.approx(raw[:, 0].mean())


def test_cnc_milling_text_phases_become_state_cycles(tmp_path):
    files = [DATA / "cnc_mill_tool_wear/data/experiment_01.csv"]
    res = import_csv(files, MAPS / "cnc_mill.yaml", tmp_path / "raw")
    csv = pd.read_csv(files[0])
    assert res.signals == csv.shape[1] - 1  # every column but the row index
    cat = {c["name"]: c for c in read_catalog(tmp_path / "raw").to_pylist()}
    assert cat["Machining_Process"]["dtype"] == "string" and cat["S1_ActualVelocity"]["unit"] == "rpm"
    out = build(tmp_path / "raw", tmp_path / "out", period="100ms", embargo="0s",
                cycles={"signal": "Machining_Process", "mode": "state"})
    cyc = ds.dataset(tmp_path / "out/cycles", partitioning="hive").to_table().sort_by("cycle_start").to_pandas()
    phases = csv["Machining_Process"]
    runs = phases[phases.ne(phases.shift())].tolist()
    assert cyc["value"].tolist() == runs
    assert cyc["rows"].sum() == len(csv)
    first = cyc.iloc[1]
    seg = csv["X1_OutputPower"][int(cyc["rows"][0]):int(cyc["rows"][0] + first["rows"])]
    assert first["X1_OutputPower__mean"] == pytest.approx(seg.mean())
    assert out.metadata["signals"][0]["stats"]["time_min"] == "2026-02-01T08:00:00Z"


def test_bad_mappings_fail_with_the_file_and_reason(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("asset: a/b\ntime: {column: ts}\nsignals: {value: {name: v, colour: red}}\n")
    with pytest.raises(DatasetError, match="colour"):
        load_mapping(bad)
    bad.write_text("asset: a/b\ntime: {}\n")
    with pytest.raises(DatasetError, match="time.start"):
        load_mapping(bad)
    m = tmp_path / "m.yaml"
    m.write_text("asset: a/b\ntime: {column: timestamp, format: epoch_s}\nsignals: {nope: {name: v}}\n")
    with pytest.raises(DatasetError, match="nope"):
        import_csv([NAB], m, tmp_path / "raw")
    m.write_text("asset: a/b\ntime: {column: timestamp, format: epoch_s}\nsignals: {value: {name: v}}\n")
    with pytest.raises(DatasetError, match="does not match format"):
        import_csv([NAB], m, tmp_path / "raw2")
