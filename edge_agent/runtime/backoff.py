"""Capped, jittered exponential backoff (the runtime's, never a connector's)."""

from __future__ import annotations

import random


class Backoff:
    """``delay(attempt) = min(cap, initial * 2**attempt)`` scaled by a jitter in [0.5, 1.0]
    ("equal jitter"): retries from many gateways never synchronise, and never flood a server."""

    def __init__(self, initial: float, cap: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.cap = max(cap, initial)
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.cap, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return base * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        self.attempt = 0
