"""Last values and short history per signal, for the status page.

The agent feeds every flushed batch (``SAMPLE_SCHEMA``) to :meth:`LastValues.update`. Work per
batch is vectorised (numpy over the batch's columns); memory is fixed per signal: one ring of
``history`` points, at most one point per ``min_step_secs`` per signal, so a 1 kHz signal and a
0.1 Hz signal both show a readable sparkline and a burst cannot grow anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from dataset_builder.format import arrow_from_numpy, numpy_filled, numpy_valid, numpy_values


class LastValues:
    """Bounded per-signal state: last value / text / quality / time, sample count, ring history."""

    def __init__(self, history: int = 60, min_step_secs: float = 1.0) -> None:
        if history < 1:
            raise ValueError("history must be >= 1")
        self.history = int(history)
        self.min_step_ns = int(min_step_secs * 1e9)
        self._n = 0  # signal ids seen so far (dense ids from the catalog)
        self.value = np.empty(0, np.float64)
        self.quality = np.empty(0, np.uint32)
        self.time_ns = np.empty(0, np.int64)
        self.count = np.empty(0, np.int64)
        self.ring_v = np.empty((0, self.history), np.float32)
        self.ring_t = np.empty((0, self.history), np.int64)
        self.ring_pos = np.empty(0, np.int32)  # next slot
        self.ring_len = np.empty(0, np.int32)
        self.text: dict[int, str] = {}  # text signals only (strings, JSON)

    def _grow(self, n: int) -> None:
        if n <= self._n:
            return
        cap = max(n, 2 * self._n, 64)
        add = cap - len(self.value)
        if add > 0:
            self.value = np.concatenate([self.value, np.full(add, np.nan)])
            self.quality = np.concatenate([self.quality, np.zeros(add, np.uint32)])
            self.time_ns = np.concatenate([self.time_ns, np.full(add, -1, np.int64)])
            self.count = np.concatenate([self.count, np.zeros(add, np.int64)])
            self.ring_v = np.concatenate([self.ring_v, np.full((add, self.history), np.nan, np.float32)])
            self.ring_t = np.concatenate([self.ring_t, np.full((add, self.history), -1, np.int64)])
            self.ring_pos = np.concatenate([self.ring_pos, np.zeros(add, np.int32)])
            self.ring_len = np.concatenate([self.ring_len, np.zeros(add, np.int32)])
        self._n = n

    def update(self, batch: pa.RecordBatch) -> None:
        """Take the latest sample of every signal in ``batch`` (by source time, ties: the later
        row) and add it to the signal's history when ``min_step_secs`` passed since its last point."""
        if batch.num_rows == 0:
            return
        ids = numpy_values(batch.column("signal_id"), np.int32).astype(np.int64)
        t = numpy_values(batch.column("source_time"), np.int64)
        vals = numpy_filled(batch.column("value"), np.float64, np.nan)
        qual = numpy_values(batch.column("quality"), np.uint32)
        self._grow(int(ids.max()) + 1)
        # last row per signal in (id, time, row) order
        order = np.lexsort((np.arange(len(ids)), t, ids))
        ids_s = ids[order]
        last = np.flatnonzero(np.r_[ids_s[1:] != ids_s[:-1], True])
        rows = order[last]
        sid = ids[rows]
        np.add.at(self.count, ids, 1)
        newer = t[rows] >= self.time_ns[sid]  # a late batch never hides a newer value
        sid, rows = sid[newer], rows[newer]
        self.value[sid] = vals[rows]
        self.quality[sid] = qual[rows]
        self.time_ns[sid] = t[rows]
        # history: one point per signal per min_step
        pos = self.ring_pos[sid]
        prev = self.ring_t[sid, (pos - 1) % self.history]
        step = (self.ring_len[sid] == 0) | (t[rows] - prev >= self.min_step_ns)
        sid, rows, pos = sid[step], rows[step], pos[step]
        self.ring_v[sid, pos] = vals[rows]
        self.ring_t[sid, pos] = t[rows]
        self.ring_pos[sid] = (pos + 1) % self.history
        self.ring_len[sid] = np.minimum(self.ring_len[sid] + 1, self.history)
        text_col = batch.column("value_text")
        if text_col.null_count < batch.num_rows:
            valid = numpy_valid(text_col)
            tr = rows if valid is None else rows[valid[rows]]
            if len(tr):
                texts = text_col.take(arrow_from_numpy(tr.astype(np.int64, copy=False), pa.int64())).to_pylist()
                for i, s in zip(ids[tr].tolist(), texts, strict=True):
                    self.text[i] = s if len(s) <= 512 else s[:509] + "..."

    def __len__(self) -> int:
        return self._n

    def snapshot(self, signal_id: int) -> dict[str, Any] | None:
        """JSON-ready view of one signal (None when no sample was seen)."""
        if signal_id >= self._n or self.count[signal_id] == 0:
            return None
        n, p = int(self.ring_len[signal_id]), int(self.ring_pos[signal_id])
        idx = np.arange(p - n, p) % self.history
        ts = (self.ring_t[signal_id, idx] // 1_000_000).tolist()
        vs = self.ring_v[signal_id, idx].astype(np.float64).round(6).tolist()
        v = float(self.value[signal_id])
        return {
            "value": None if v != v else v,  # NaN (gap rows, text rows) -> null
            "text": self.text.get(signal_id),
            "quality": int(self.quality[signal_id]),
            "time_ns": int(self.time_ns[signal_id]),
            "count": int(self.count[signal_id]),
            "history": [[t, None if x != x else x] for t, x in zip(ts, vs, strict=True)],  # [ms, value], oldest first
        }
