"""Every registered component has a config model, a valid sample.yaml and a README; the
generated config reference is up to date."""

from pathlib import Path

import pytest
import yaml

from connectors.registry import BUILTIN_CONNECTORS, connector_dir
from edge_agent.config import load_config_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("type_", sorted(BUILTIN_CONNECTORS))
def test_connector_has_sample_readme_and_valid_sample(type_):
    folder = ROOT / connector_dir(type_).replace(".", "/")
    sample = folder / "sample.yaml"
    assert sample.is_file(), f"{sample} missing"
    assert (folder / "README.md").is_file(), f"{folder}/README.md missing"
    section = yaml.safe_load(sample.read_text())
    assert isinstance(section, list) and section, "sample.yaml must be a list of connector sections"
    text = yaml.safe_dump({"connectors": section})
    cfg = load_config_text(text, fname=str(sample))
    assert {c.type for c in cfg.connectors} <= set(BUILTIN_CONNECTORS)


def test_config_reference_is_generated_and_current():
    from edge_agent.config.reference import render_reference

    doc = ROOT / "docs" / "config-reference.md"
    assert doc.read_text() == render_reference(), "run: axedge config reference --out docs/config-reference.md"


def test_registry_import_is_light():
    import subprocess
    import sys

    code = "import sys, connectors.registry, edge_agent.config.models; print(','.join(m for m in ('asyncua','pymodbus','paho','onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported by the config layer: {out}"
