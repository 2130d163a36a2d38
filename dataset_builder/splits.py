"""Time-based train / validation / test splits without leakage.

The whole dataset's time range (all assets together) is cut into three consecutive blocks in
the given fractions, at multiples of the grid period: train is the oldest, test the newest.
Using one set of boundaries for every asset keeps correlated assets of one plant from leaking
the future into training. Rows within ``embargo`` after each boundary get no split (null): a
model's look-back window, or a value forward-filled across the boundary, cannot carry training
data into validation or test. A cycle belongs to a split only when it lies entirely inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    train_end: int  # epoch us, exclusive
    validation_end: int
    embargo_us: int

    @classmethod
    def plan(cls, t_min: int, t_max: int, period_us: int, fractions: tuple[float, float, float],
             embargo_us: int) -> Splits:
        if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(f"split fractions must be three non-negative numbers summing to 1, not {fractions}")
        span = t_max - t_min + period_us
        b1 = t_min + round(span * fractions[0] / period_us) * period_us
        b2 = t_min + round(span * (fractions[0] + fractions[1]) / period_us) * period_us
        return cls(b1, b2, int(embargo_us))

    def assign(self, times_us: np.ndarray) -> pa.Array:
        """The split of each row: ``train``/``validation``/``test``, null inside an embargo."""
        code = np.where(times_us < self.train_end, 0, np.where(times_us < self.validation_end, 1, 2))
        emb = ((times_us >= self.train_end) & (times_us < self.train_end + self.embargo_us)) | (
            (times_us >= self.validation_end) & (times_us < self.validation_end + self.embargo_us))
        names = np.array(NAMES, dtype=object)[code]
        return pa.array(names, pa.string(), mask=emb)

    def of_range(self, start_us: int, end_us: int) -> str | None:
        """The split of a time range ``[start, end)``, None when it touches a boundary or embargo."""
        a = self.assign(np.array([start_us, max(start_us, end_us - 1)], np.int64)).to_pylist()
        return a[0] if a[0] == a[1] else None

    def to_dict(self) -> dict:
        from dataset_builder.labels import iso

        return {"method": "time", "order": list(NAMES), "train_end": iso(self.train_end),
                "validation_end": iso(self.validation_end), "embargo_s": self.embargo_us / 1e6}
