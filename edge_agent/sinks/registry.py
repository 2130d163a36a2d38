"""Explicit sink registry: one line per built-in sink (config model, factory).

Config models are imported eagerly (they are plain pydantic); implementations lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

# type -> (config model "module:Class", factory "module:function")
BUILTIN_SINKS: dict[str, tuple[str, str]] = {
    "parquet": ("edge_agent.sinks.parquet:ParquetSinkConfig", "edge_agent.sinks.parquet:build"),
    "mqtt_uplink": ("edge_agent.sinks.mqtt_uplink:MqttUplinkConfig", "edge_agent.sinks.mqtt_uplink:build"),
}


def _load(ref: str) -> Any:
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)


def sink_config_models() -> list[type]:
    return [_load(cfg) for cfg, _ in BUILTIN_SINKS.values()]


def sink_factory(type_: str):
    return _load(BUILTIN_SINKS[type_][1])
