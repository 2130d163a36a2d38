"""axedge dataset builder: the dataset format, the raw Parquet writer, and (later) curation.

This package never imports ``edge_agent`` or ``connectors``: platform vendors use it alone.
"""

from dataset_builder.format import FORMAT_VERSION, SAMPLE_SCHEMA, Quality

__all__ = ["FORMAT_VERSION", "SAMPLE_SCHEMA", "Quality"]
