"""Sharing export: drop / pseudonymise / quantise / noise / relative time, and a byte scan for leaks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from dataset_builder.curate import build
from dataset_builder.format import DatasetError
from dataset_builder.share import export, load_policy
from tests.dataset.rawgen import DAY0_NS, SEC, record, samples, write_raw

SITE, LINE, ASSET = "hushhushsite", "linebravo7", "pressmaster9"
PATH = f"{SITE}/hall3/{LINE}/{ASSET}"
KEY = "k3y-Zq9-very-long-secret-value"
DROPPED = ["recipe_setpoint_xq", "secret__alloy_mix"]  # "__" as in the state/feature suffixes
PSEUDO = ["spindle_torque_zz"]


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    names = DROPPED + PSEUDO + ["force", "strokes"]
    cat = [record(i, PATH, n, unit="kN") for i, n in enumerate(names)]
    n = 1200
    t = DAY0_NS + 86_400 * SEC - 600 * SEC + np.arange(n) * SEC  # crosses midnight: two days
    rng = np.random.default_rng(3)
    batches = [samples(np.full(n, i), t, rng.normal(50, 5, n)) for i in range(4)]
    batches.append(samples(np.full(n, 4), t, (np.arange(n) // 20).astype(float)))
    write_raw(root / "raw", cat, batches, provenance={"gateway": f"gw-{SITE}", "config_hash": "x"})
    ev = root / "truth.jsonl"
    ev.write_text("\n".join(json.dumps(e) for e in [
        {"start": 1763942100, "end": 1763942160, "kind": "overheat", "signals": [f"{PATH}/{DROPPED[0]}"]},
        {"start": 1763942200, "end": 1763942260, "kind": "jam", "signals": [f"{PATH}/{PSEUDO[0]}", f"{PATH}/force"]},
        {"start": 1763942300, "end": 1763942360, "kind": "stop", "asset": PATH}]) + "\n")
    build(root / "raw", root / "cur", period="5s", events=[ev], cycles={"signal": "strokes"}, embargo="0s")
    return root


def policy_file(tmp_path, monkeypatch, **over):
    monkeypatch.setenv("AXEDGE_TEST_SHARE_KEY", KEY)
    doc = {"key": "${env:AXEDGE_TEST_SHARE_KEY}", "assets": "pseudonymise", "time": "relative",
           "signals": [{"match": "recipe_*", "drop": True}, {"match": f"{PATH}/secret_*", "drop": True},
                       {"match": "spindle_*", "pseudonymise": True, "quantise": 0.5},
                       {"match": "force", "noise": 0.1}], **over}
    p = tmp_path / "share.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def all_bytes(root):
    """Every file's bytes, and every file and directory name, under root."""
    for p in sorted(root.rglob("*")):
        yield str(p.relative_to(root)).encode()
        if p.is_file():
            yield p.read_bytes()


def test_export_leaks_no_dropped_signal_original_name_or_key(curated, tmp_path, monkeypatch):
    out = tmp_path / "shared"
    doc = export(curated / "cur", load_policy(policy_file(tmp_path, monkeypatch)), out, compression="none")
    blobs = list(all_bytes(out))
    forbidden = DROPPED + PSEUDO + [SITE, LINE, ASSET, "hall3", KEY, "ns=2;s=", "gw-"]
    for word in forbidden:
        hits = [b[:80] for b in blobs if word.encode() in b]
        assert not hits, f"{word!r} leaked into {hits}"
    # the scan sees plain text: kept signal names and event kinds are there
    assert any(b"force" in b for b in blobs) and any(b"strokes" in b for b in blobs)
    assert any(b"jam" in b for b in blobs)
    assert doc["sharing"]["signals_dropped"] == 2 and doc["sharing"]["signals_pseudonymised"] == 1
    assert "policy_fingerprint" in doc["sharing"] and KEY not in json.dumps(doc)


def test_export_transforms_values_time_and_events(curated, tmp_path, monkeypatch):
    pol = load_policy(policy_file(tmp_path, monkeypatch))
    out = tmp_path / "shared"
    doc = export(curated / "cur", pol, out)
    src = ds.dataset(curated / "cur/curated", partitioning="hive").to_table().sort_by("time").to_pandas()
    dst = ds.dataset(out / "curated", partitioning="hive").to_table().sort_by("elapsed_us").to_pandas()
    assert len(src) == len(dst) and sorted(set(dst["date"])) == ["day-0000", "day-0001"]
    assert dst["elapsed_us"].iloc[0] == 0 and dst["elapsed_us"].iloc[-1] == 5_000_000 * (len(src) - 1)
    [pseudo] = [c for c in dst.columns if c.startswith("sig_") and not c.endswith("__state")]
    q = dst[pseudo].to_numpy()
    np.testing.assert_allclose(q, np.round(src[PSEUDO[0]].to_numpy() / 0.5) * 0.5)
    noise = dst["force"].to_numpy() - src["force"].to_numpy()
    assert 0.05 < noise.std() < 0.2 and abs(noise.mean()) < 0.05
    assert (dst["strokes"] == src["strokes"]).all()
    assert not any(c.startswith(d) for c in dst.columns for d in DROPPED)
    # same key -> same pseudonyms (joinable across exports); another key -> different
    doc2 = export(curated / "cur", pol, tmp_path / "again")
    assert [s["name"] for s in doc2["signals"]] == [s["name"] for s in doc["signals"]]
    monkeypatch.setenv("AXEDGE_TEST_SHARE_KEY", KEY + "-other")
    doc3 = export(curated / "cur", load_policy(tmp_path / "share.yaml"), tmp_path / "other")
    assert {s["name"] for s in doc3["signals"]} != {s["name"] for s in doc["signals"]}
    assert doc3["sharing"]["policy_fingerprint"] == doc["sharing"]["policy_fingerprint"]
    # events: the one only about a dropped signal is gone; others keep mapped names
    ev = pq.read_table(out / "events/events.parquet").to_pylist()
    assert sorted(e["kind"] for e in ev) == ["jam", "stop"]
    jam = next(e for e in ev if e["kind"] == "jam")
    assert jam["signals"][0].endswith("/" + pseudo) and jam["signals"][1].endswith("/force")
    # cycle table: features of dropped signals are gone, times relative
    cyc = ds.dataset(out / "cycles", partitioning="hive").to_table()
    assert "cycle_start" in cyc.column_names and not [c for c in cyc.column_names if "recipe" in c]
    assert str(cyc.schema.field("cycle_start").type) == "int64"


def test_policy_errors_are_clear(curated, tmp_path, monkeypatch):
    p = policy_file(tmp_path, monkeypatch, key="${env:AXEDGE_TEST_MISSING_KEY}")
    with pytest.raises(DatasetError, match="AXEDGE_TEST_MISSING_KEY"):
        export(curated / "cur", load_policy(p), tmp_path / "x")
    p.write_text(yaml.safe_dump({"signals": [{"match": "a", "shred": True}]}))
    with pytest.raises(DatasetError, match="shred"):
        load_policy(p)
    p.write_text(yaml.safe_dump({"key": "short"}))
    with pytest.raises(DatasetError, match="shorter"):
        export(curated / "cur", load_policy(p), tmp_path / "y")
