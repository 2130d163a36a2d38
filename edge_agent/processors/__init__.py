"""Processors: pure stages that read flushed batches and emit derived samples (scores, events)."""
