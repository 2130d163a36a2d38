"""One suite over every registered connector (CONVENTIONS 6, contract tests)."""

from pathlib import Path

import pytest
import yaml

from connectors.base import Connector, ConnectorContext
from connectors.registry import BUILTIN_CONNECTORS, connector_dir, connector_factory
from edge_agent.config import load_config_text
from edge_agent.core.channel import BoundedChannel
from edge_agent.signals import SignalCatalog

ROOT = Path(__file__).resolve().parents[2]


def _sections(type_):
    folder = ROOT / connector_dir(type_).replace(".", "/")
    text = yaml.safe_dump({"connectors": yaml.safe_load((folder / "sample.yaml").read_text())})
    return load_config_text(text).connectors


@pytest.mark.parametrize("type_", sorted(BUILTIN_CONNECTORS))
async def test_build_does_no_io_and_aclose_is_idempotent(type_, tmp_path):
    for section in _sections(type_):
        ch = BoundedChannel(1000, 1_000_000)

        async def send(chunk, _ch=ch):
            return _ch.send_nowait(chunk)

        ctx = ConnectorContext(section.id, SignalCatalog(), send, state_dir=tmp_path / section.id)
        units = connector_factory(section.type)(section, ctx)  # must not touch the network
        assert units and all(isinstance(u, Connector) for u in units)
        assert len({u.name for u in units}) == len(units), "unit names must be unique (metrics, logs)"
        for u in units:
            await u.aclose()
            await u.aclose()
        assert len(ch) == 0
