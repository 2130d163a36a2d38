"""Metadata of a curated dataset: Croissant validated and read with mlcroissant, card, provenance."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pyarrow.dataset as ds
import pytest
import yaml

from dataset_builder.curate import build
from dataset_builder.share import Policy, export
from tests.dataset.rawgen import DAY0_NS, SEC, record, samples, write_raw

mlc = pytest.importorskip("mlcroissant")

A = "acme/plant1/line1/press"
B = "acme/plant1/line2/oven"


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("meta")
    cat = [record(0, A, "temperature", unit="degC", eclass="0173-1#02-AAV232#002"),
           record(1, A, "strokes", unit="count", dtype="int64"), record(2, B, "power", unit="kW")]
    n = 900
    t = DAY0_NS + np.arange(n) * SEC
    write_raw(root / "raw", cat, [samples(np.zeros(n), t, np.linspace(20, 30, n)),
                                  samples(np.ones(n), t, (np.arange(n) // 45).astype(float)),
                                  samples(np.full(n // 2, 2), t[::2], np.arange(n // 2, dtype=float))],
              provenance={"gateway": "gw-7", "axedge_version": "0.1.0", "config_hash": "abc123"})
    ev = root / "ev.jsonl"
    ev.write_text(json.dumps({"start": DAY0_NS // SEC + 60, "end": DAY0_NS // SEC + 90, "kind": "jam",
                              "asset": A}) + "\n")
    build(root / "raw", root / "cur", period="5s", cycles={"signal": "strokes"}, events=[ev], embargo="0s",
          license="CC-BY-4.0", description="Press and oven test data")
    return root


def validate(path):
    dataset = mlc.Dataset(jsonld=path)
    issues = dataset.metadata.ctx.issues
    assert not issues.errors and not issues.warnings, issues.report()
    return dataset


def test_croissant_validates_and_its_records_are_the_curated_rows(curated):
    dataset = validate(curated / "cur/croissant.json")
    sets = {r.uuid for r in dataset.metadata.record_sets}
    assert sets == {"curated/acme.plant1.line1.press", "curated/acme.plant1.line2.oven",
                    "cycles/acme.plant1.line1.press", "events"}
    rs = "curated/acme.plant1.line1.press"
    recs = list(itertools.islice(dataset.records(record_set=rs), 5))
    table = ds.dataset(curated / "cur/curated", partitioning="hive").to_table(
        filter=ds.field("asset") == "acme.plant1.line1.press").sort_by("time").slice(0, 5).to_pylist()
    for rec, row in zip(recs, table):
        assert rec[f"{rs}/temperature"] == pytest.approx(row["temperature"])
        assert rec[f"{rs}/temperature__state"] == row["temperature__state"]
    [ev] = list(dataset.records(record_set="events"))
    assert ev["events/kind"] == b"jam"
    doc = json.loads((curated / "cur/croissant.json").read_text())
    field = next(f for s in doc["recordSet"] if s["@id"] == rs for f in s["field"] if f["name"] == "temperature")
    assert "Cel" in field["description"] and "CEL" in field["description"]


def test_exported_croissant_validates_too(curated, tmp_path):
    out = tmp_path / "shared"
    export(curated / "cur", Policy(key="a-long-enough-share-key", time="relative"), out)
    dataset = validate(out / "croissant.json")
    [rs] = [r.uuid for r in dataset.metadata.record_sets if r.uuid.startswith("curated/") and "n_" in r.uuid][:1]
    first = next(iter(dataset.records(record_set=rs)))
    assert first[f"{rs}/elapsed_us"] == 0


def test_dataset_json_has_units_semantics_provenance_and_checksums(curated):
    root = curated / "cur"
    doc = json.loads((root / "_axedge/dataset.json").read_text())
    sig = {s["name"]: s for s in doc["signals"]}
    assert (sig["temperature"]["ucum"], sig["temperature"]["unece"]) == ("Cel", "CEL")
    assert sig["temperature"]["eclass"] == "0173-1#02-AAV232#002"
    assert sig["strokes"]["aggregation"] == "last" and sig["power"]["aggregation"] == "mean"
    assert sig["temperature"]["address"] == "ns=2;s=temperature"
    assert sig["power"]["stats"]["count"] == 180 and sig["power"]["stats"]["filled"] == 0
    assert sig["power"]["sampling"] == {"period": "5s", "raw_interval_s": 2.0}
    assert sig["temperature"]["sampling"]["raw_interval_s"] == 1.0
    prov = doc["provenance"]
    assert prov["source"]["producers"] == [{"gateway": "gw-7", "axedge_version": "0.1.0", "config_hash": "abc123"}]
    for f in prov["source"]["files"]:
        assert hashlib.sha256((curated / "raw" / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    for f in doc["files"]["curated"] + doc["files"]["cycles"] + doc["files"]["events"]:
        assert hashlib.sha256((root / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert doc["time_range"] == {"start": "2025-11-23T00:00:00Z", "end": "2025-11-23T00:14:55Z"}


def test_card_has_front_matter_signals_gaps_and_licence(curated):
    text = (curated / "cur/README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == "CC-BY-4.0"
    assert {c["config_name"] for c in front["configs"]} == {"acme.plant1.line1.press", "acme.plant1.line2.oven"}
    body = text.split("---\n", 2)[2]
    for needle in ("Press and oven test data", "| acme.plant1.line1.press | temperature | degC | Cel | CEL | mean |",
                   "## Known gaps", "## Splits", "gateway=gw-7", "CC-BY-4.0"):
        assert needle in body
