"""Core of the agent: sample chunks, bounded channels and the batcher."""
