"""Explicit connector registry: one line per built-in connector (Telegraf-style, but explicit).

Config models are imported eagerly (plain pydantic, no protocol libraries); the implementation
module, which imports asyncua / pymodbus / paho, only when a connector of that type is built.
A contract test checks every entry has a config model, a valid ``sample.yaml`` and a README.
"""

from __future__ import annotations

import importlib
from typing import Any

# type -> (config model "module:Class", factory "module:function")
BUILTIN_CONNECTORS: dict[str, tuple[str, str]] = {
    "synthetic": ("connectors.synthetic.config:SyntheticConfig", "connectors.synthetic.connector:build"),
    "mqtt": ("connectors.mqtt.config:MqttConfig", "connectors.mqtt.connector:build"),
    "modbus": ("connectors.modbus.config:ModbusConfig", "connectors.modbus.connector:build"),
    "opcua_subscription": ("connectors.opcua.config:OpcUaSubscriptionConfig", "connectors.opcua.connector:build_subscription"),
    "opcua_polling": ("connectors.opcua.config:OpcUaPollingConfig", "connectors.opcua.connector:build_polling"),
}


def _load(ref: str) -> Any:
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)


def connector_config_models() -> list[type]:
    return [_load(cfg) for cfg, _ in BUILTIN_CONNECTORS.values()]


def connector_factory(type_: str):
    """The ``build(config, ctx) -> list[Connector]`` function for ``type_``."""
    return _load(BUILTIN_CONNECTORS[type_][1])


def connector_dir(type_: str) -> str:
    """The package folder of a connector type (for sample.yaml / README lookups)."""
    mod = BUILTIN_CONNECTORS[type_][0].partition(":")[0]
    return mod.rsplit(".", 1)[0]
