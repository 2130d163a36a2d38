"""Croissant (MLCommons, format 1.0) JSON-LD for a curated dataset.

One ``cr:FileSet`` and one ``cr:RecordSet`` per asset (assets have different columns), one for
the cycles of each asset that has them, and one for the events. Each signal field carries its
unit (UCUM, and the UNECE code as ``sc:unitCode``) in its description and ``equivalentProperty``
is left to the user (semantic ids are in ``dataset.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


def _dtype(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "sc:Date"
    if pa.types.is_floating(t):
        return "sc:Float"
    if pa.types.is_integer(t):
        return "sc:Integer"
    if pa.types.is_boolean(t):
        return "sc:Boolean"
    return "sc:Text"


def _schema(root: Path, rel: str) -> pa.Schema:
    return pq.read_schema(root / rel)


def _record_set(rs_id: str, fs_id: str, schema: pa.Schema, describe: dict[str, str], desc: str,
                key: list[str]) -> dict[str, Any]:
    fields = []
    for f in schema:
        if pa.types.is_list(f.type):
            continue
        fields.append({
            "@type": "cr:Field", "@id": f"{rs_id}/{f.name}", "name": f.name,
            "description": describe.get(f.name, f.name), "dataType": _dtype(f.type),
            "source": {"fileSet": {"@id": fs_id}, "extract": {"column": f.name}},
        })
    return {"@type": "cr:RecordSet", "@id": rs_id, "name": rs_id, "description": desc,
            "key": [{"@id": f"{rs_id}/{k}"} for k in key], "field": fields}


def from_metadata(doc: dict[str, Any], root: Path) -> dict[str, Any]:
    """The Croissant document of the curated dataset at ``root`` described by ``doc``."""
    states = ", ".join(f"{k}={v}" for k, v in doc["states"].items())
    by_column: dict[str, dict[str, str]] = {}
    for s in doc["signals"]:
        unit = s.get("ucum") or s.get("unit")
        text = f"{s['name']} of {s['asset']}" + (f" [{unit}]" if unit else "") + (
            f" (UNECE {s['unece']})" if s.get("unece") else "") + f", {s['aggregation']} per {s['sampling']['period']}"
        cols = by_column.setdefault(s["asset_partition"], {})
        cols[s["column"]] = text
        cols[s["column"] + "__state"] = f"state of {s['column']} per row: {states}"
    common = {"time": f"start of the grid period (UTC, {doc['build']['period']})",
              "elapsed_us": f"start of the grid period, microseconds since the dataset start ({doc['build']['period']})",
              "label": "kinds of the events/labels overlapping the period, joined with |",
              "split": "train / validation / test (null: embargo around a split boundary)",
              "cycle_start": "start of the production cycle the period belongs to"}
    distribution: list[dict] = []
    record_sets: list[dict] = []
    for a in doc["assets"]:
        part = a["partition"]
        fs = f"curated-{part}"
        first = next(f["path"] for f in doc["files"]["curated"] if f"/asset={part}/" in f["path"])
        distribution.append({"@type": "cr:FileSet", "@id": fs, "name": fs, "encodingFormat": "application/x-parquet",
                             "includes": f"curated/asset={part}/*/*.parquet",
                             "description": f"curated rows of asset {a.get('path') or part}, one file per UTC day"})
        record_sets.append(_record_set(f"curated/{part}", fs, _schema(root, first),
                                       {**common, **by_column.get(part, {})},
                                       f"One row per {doc['build']['period']} of asset {a.get('path') or part}",
                                       ["time"]))
        cyc = [f["path"] for f in doc["files"].get("cycles", []) if f"/asset={part}/" in f["path"]]
        if cyc:
            cfs = f"cycles-{part}"
            distribution.append({"@type": "cr:FileSet", "@id": cfs, "name": cfs,
                                 "encodingFormat": "application/x-parquet",
                                 "includes": f"cycles/asset={part}/*/*.parquet"})
            record_sets.append(_record_set(f"cycles/{part}", cfs, _schema(root, cyc[0]), {},
                                           f"One row per production cycle of asset {a.get('path') or part}",
                                           ["cycle_start"]))
    for f in doc["files"].get("events", []):
        distribution.append({"@type": "cr:FileObject", "@id": "events-file", "name": "events-file",
                             "contentUrl": f["path"], "encodingFormat": "application/x-parquet",
                             "sha256": f["sha256"]})
        record_sets.append(_record_set("events", "events-file", _schema(root, f["path"]), {},
                                       "Events and labels (start, end, kind, source, asset)", []))
        record_sets[-1]["field"] = [dict(x, source={"fileObject": {"@id": "events-file"},
                                                    "extract": x["source"]["extract"]}) for x in record_sets[-1]["field"]]
        del record_sets[-1]["key"]
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": doc["name"],
        "description": doc["description"],
        "license": doc["license"],
        "citeAs": f"@misc{{{doc['name']}, title={{{doc['name']}}}, note={{axedge curated dataset, built "
                  f"{(doc.get('created') or '')[:10]}}}}}",
        "version": f"{doc['format_version']}.0.0",
        **({"datePublished": doc["created"][:10]} if doc.get("created") else {}),
        "creator": {"@type": "sc:Organization", "name": "axedge"},
        "keywords": ["manufacturing", "industrial IoT", "time series", "axedge"],
        "distribution": distribution,
        "recordSet": record_sets,
    }
