"""The dataset card: ``README.md`` with YAML front matter, as Hugging Face datasets use.

Rendered from ``dataset.json``: description, how to load, layout, signals table (unit, UCUM,
aggregation, statistics), splits, known gaps (asset outages and the signals with most missing
periods), data issues the build handled, provenance and licence.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_GAPS = 20


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v).replace("|", "\\|")


def render(doc: dict[str, Any]) -> str:
    front = {
        "pretty_name": doc["name"],
        "license": doc["license"],
        "tags": ["manufacturing", "industrial-iot", "time-series", "axedge"],
        "task_categories": ["time-series-forecasting", "tabular-classification"],
        "size_categories": [_size(doc["rows"])],
        "configs": [{"config_name": a["partition"],
                     "data_files": [{"split": "rows", "path": f"curated/asset={a['partition']}/*/*.parquet"}]}
                    for a in doc["assets"]],
    }
    b = doc["build"]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", f"# {doc['name']}", "",
             doc["description"], "",
             f"- Time range: {doc['time_range']['start']} to {doc['time_range']['end']} (UTC)",
             f"- Grid: one row per {b['period']} per asset; forward fill up to {b['fill_limit_periods']} periods",
             f"- Rows: {doc['rows']}; assets: {len(doc['assets'])}; signals: {len(doc['signals'])}",
             f"- Format: {doc['format']} version {doc['format_version']} (curated layer); metadata in "
             "`_axedge/dataset.json`, Croissant in `croissant.json`", "",
             "## Loading", "", "```python", "import pyarrow.dataset as ds",
             "t = ds.dataset('curated', partitioning='hive').to_table()", "# or: pandas.read_parquet('curated'), "
             "polars.scan_parquet('curated/**/*.parquet', hive_partitioning=True)", "```", "",
             "Each `<signal>` column has a `<signal>__state` column: 0 observed, 1 forward-filled, 2 missing, "
             "3 bad quality. `label` holds the kinds of events overlapping the row, `split` the time-based split.", "",
             "## Assets", "", "| asset | path | rows | cycles | days |", "|---|---|---|---|---|"]
    for a in doc["assets"]:
        lines.append(f"| {a['partition']} | {_fmt(a.get('path'))} | {a['rows']} | {a['cycles']} | {len(a['dates'])} |")
    lines += ["", "## Signals", "",
              "| asset | column | unit | UCUM | UNECE | aggregation | count | mean | std | min | max | missing |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in doc["signals"]:
        st = s["stats"]
        miss = st.get("missing_fraction")
        lines.append("| " + " | ".join(_fmt(x) for x in (
            s["asset_partition"], s["column"], s.get("unit"), s.get("ucum"), s.get("unece"), s["aggregation"],
            st.get("count", st.get("observed")), st.get("mean"), st.get("std"), st.get("min"), st.get("max"),
            f"{miss:.1%}" if miss is not None else None)) + " |")
    sp = b["split"]
    lines += ["", "## Splits", "",
              f"Time-based, shared by all assets: train before {sp['train_end']}, validation before "
              f"{sp['validation_end']}, test after; rows within {sp['embargo_s']:g} s after each boundary have no "
              "split (embargo against leakage). Cycles crossing a boundary have no split.", "",
              "## Known gaps", ""]
    outages = sorted(((o, a["partition"]) for a in doc["assets"] for o in a["outages"]), key=lambda x: -x[0]["rows"])
    if outages:
        lines += ["Periods where an asset delivered no value at all (longest first):", "",
                  "| asset | start | end | periods |", "|---|---|---|---|"]
        lines += [f"| {a} | {o['start']} | {o['end']} | {o['rows']} |" for o, a in outages[:MAX_GAPS]]
        if len(outages) > MAX_GAPS:
            lines.append(f"\n{len(outages) - MAX_GAPS} shorter outages are listed in `_axedge/dataset.json`.")
    else:
        lines.append("No period without any value.")
    worst = sorted((s for s in doc["signals"] if s["stats"]["longest_gap_rows"]),
                   key=lambda s: -s["stats"]["longest_gap_rows"])[:MAX_GAPS]
    if worst:
        lines += ["", "Signals with the longest missing runs:", "", "| signal | gap runs | longest (periods) |",
                  "|---|---|---|"]
        lines += [f"| {s['key']} | {s['stats']['gap_runs']} | {s['stats']['longest_gap_rows']} |" for s in worst]
    lines += ["", "## Data issues handled by the build", "", "| issue | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in doc["issues"].items()]
    prov = doc["provenance"]
    lines += ["", "## Provenance", "", f"Built by axedge {prov['builder']['axedge_version']} from a raw dataset "
              f"({len(prov['source']['files'])} files; checksums in `_axedge/dataset.json`).", ""]
    for p in prov["source"]["producers"]:
        if p:
            lines.append("- producer: " + ", ".join(f"{k}={v}" for k, v in sorted(p.items())))
    lines += ["", "## Licence", "", f"{doc['license']}", ""]
    return "\n".join(lines)


def _size(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return name
    return "n>100M"
