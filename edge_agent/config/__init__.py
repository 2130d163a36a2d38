"""Configuration: one YAML file, validated by pydantic v2 models.

``load_config(path)`` returns an :class:`~edge_agent.config.models.AgentConfig` or raises
:class:`~edge_agent.errors.ConfigError` whose problems read ``plant.yaml:42 connectors[1].x: ...``.
"""

from edge_agent.config.loader import load_config, load_config_text

__all__ = ["load_config", "load_config_text"]
