"""The edge scorer: the anomaly processor the agent runs beside collection.

:class:`EdgeScorer` is a plain object. ``process(batch)`` (called on the event loop with every
sample chunk or ``SAMPLE_SCHEMA`` record batch) is cheap, vectorised numpy work: it puts the
latest value of each model input onto the model's sampling grid (the same
:func:`~models.features.align_with_age` used offline), cuts windows every ``hop`` grid rows, and
hands them to a worker thread through a bounded queue (``when_full = drop_oldest``, counted).
The worker runs ONNX Runtime on one thread, applies the threshold, and turns consecutive
anomalous windows into :class:`AnomalyEvent` s (start, end, peak score, top signals). Events come
back from ``process`` (or ``drain_events``), score rows from ``drain_scores``.

Grid rows are emitted once the watermark (latest source time seen minus ``lateness``) passes them.
A cell is empty when its signal has never been seen (``missing_input``), its latest value is
older than ``max_age`` (``stale_input``), or its latest sample is a gap / bad quality
(``bad_input``); a window with an empty cell is not scored and the reason is counted. Never a
score on invented data.

Hot reload: :meth:`reload` loads the bundle directory again when ``model.json`` changed,
validates it (checksum, every input in the signal catalog, units equal, a test inference) and
swaps it in; a bad bundle is refused with the error kept in ``last_reload_error`` while the old
model keeps running.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataset_builder.format import (
    TS_NS_UTC,
    arrow_bools,
    arrow_from_numpy,
    arrow_strings,
    numpy_filled,
    numpy_values,
)
from models.bundle import META_FILE, Bundle, load
from models.errors import InputMismatch, ModelError
from models.features import align_with_age, latest_per_column

log = logging.getLogger("axedge.models")

SKIP_REASONS = ("missing_input", "stale_input", "bad_input")


@dataclass
class AnomalyEvent:
    """A run of consecutive anomalous windows."""

    model: str
    start_ns: int
    end_ns: int
    peak_ns: int
    peak_score: float
    threshold: float
    windows: int
    top_signals: list[tuple[str, float]]  # (signal, share of the event's total contribution)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "peak_ns": self.peak_ns,
            "peak_score": self.peak_score,
            "threshold": self.threshold,
            "windows": self.windows,
            "top_signals": [{"signal": s, "share": round(v, 4)} for s, v in self.top_signals],
        }


@dataclass
class ScorerStats:
    """Plain counters (exported by the agent's metrics collector)."""

    samples_in: int = 0
    samples_late: int = 0
    windows_enqueued: int = 0
    windows_scored: int = 0
    windows_skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    windows_dropped: dict[str, int] = field(default_factory=dict)
    anomalous_windows: int = 0
    events: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    results_dropped: dict[str, int] = field(default_factory=dict)  # undrained scores / events
    reloads: int = 0
    reload_failures: int = 0
    inference_batches: int = 0
    inference_secs: float = 0.0
    latencies_us: deque = field(default_factory=lambda: deque(maxlen=4096))  # per-window, recent

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly copy for metrics and health endpoints."""
        return {
            "samples_in": self.samples_in,
            "samples_late": self.samples_late,
            "windows_enqueued": self.windows_enqueued,
            "windows_scored": self.windows_scored,
            "windows_skipped": dict(self.windows_skipped),
            "windows_dropped": dict(self.windows_dropped),
            "anomalous_windows": self.anomalous_windows,
            "events": self.events,
            "errors": dict(self.errors),
            "results_dropped": dict(self.results_dropped),
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "inference_batches": self.inference_batches,
            "inference_secs": self.inference_secs,
            "latency_us_per_window": self.latency_quantiles_us(),
        }

    def latency_quantiles_us(self) -> dict[str, float]:
        if not self.latencies_us:
            return {}
        a = np.fromiter(self.latencies_us, dtype=np.float64)
        return {"p50": float(np.quantile(a, 0.5)), "p99": float(np.quantile(a, 0.99))}


class _Model:
    """A validated bundle bound to the catalog's signal ids."""

    def __init__(self, bundle: Bundle, catalog: Any, digest: str) -> None:
        self.bundle = bundle
        self.digest = digest
        self.name = str(bundle.meta.get("name") or bundle.kind)
        self.ids = np.array([_resolve(catalog, s, bundle.units.get(s)) for s in bundle.signals], dtype=np.int64)
        self.threshold = bundle.threshold
        self.window, self.hop, self.period = bundle.window, bundle.hop, bundle.period_ns
        sc, co = bundle.run(np.zeros((1, self.window, len(self.ids)), np.float32))
        if sc.shape != (1,) or co.shape != (1, len(self.ids)):
            raise ModelError(f"model {self.name}: graph outputs have shapes {sc.shape}, {co.shape}")


def _resolve(catalog: Any, name: str, unit: str | None) -> int:
    """Signal id for a bundle input: by key, else by a unique signal name; units must match."""
    sig = catalog.by_key(name)
    if sig is None:
        same = [s for s in catalog.snapshot() if s.spec.name == name]
        if len(same) > 1:
            raise InputMismatch(f"model input {name!r} is ambiguous: {[s.key for s in same]}")
        sig = same[0] if same else None
    if sig is None:
        raise InputMismatch(f"model input {name!r} is not a signal of this agent")
    if unit and sig.spec.unit and unit != sig.spec.unit:
        raise InputMismatch(f"model input {name!r} has unit {unit!r}, the signal {sig.key!r} has {sig.spec.unit!r}")
    return int(sig.id)


class EdgeScorer:
    """Scores a bundle directory's model on the live sample stream (see the module docstring)."""

    def __init__(
        self,
        model_dir: str | Path,
        catalog: Any,
        *,
        max_queue_batches: int = 64,
        max_age_periods: float = 3.0,
        lateness_periods: float = 1.0,
        max_pending_score_batches: int = 10_000,
        max_pending_events: int = 1_000,
        top_k: int = 3,
        on_delay_windows: int = 1,
        off_delay_windows: int = 1,
        max_age_secs: float | None = None,
    ) -> None:
        if on_delay_windows < 1 or off_delay_windows < 1:
            raise ValueError("on_delay_windows and off_delay_windows must be >= 1")
        self.model_dir = Path(model_dir)
        # alarm on-delay / off-delay (ISA-18.2 style): an event opens after ``on_delay_windows``
        # anomalous windows in a row and closes after ``off_delay_windows`` normal ones in a row
        self.on_delay_windows = on_delay_windows
        self.off_delay_windows = off_delay_windows
        self.catalog = catalog
        self.max_age_periods = max_age_periods
        # ``max_age_secs`` (when given) overrides ``max_age_periods``: report-by-exception sources
        # (OPC UA subscriptions, MQTT on change) send nothing while a value holds still
        self.max_age_secs = max_age_secs
        self.lateness_periods = lateness_periods
        self.top_k = top_k
        self.stats = ScorerStats()
        self.last_reload_error: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue_batches)
        # results wait here for drain_*(); when nobody drains, the oldest go (counted)
        self._scores: deque = deque(maxlen=max_pending_score_batches)
        self._events: deque = deque(maxlen=max_pending_events)
        self._lock = threading.Lock()
        self._model: _Model | None = None
        self._rejected: str | None = None
        self._worker: threading.Thread | None = None
        self._open: dict[str, Any] | None = None
        self._pending: dict[str, Any] | None = None  # anomalous run shorter than the on-delay
        self._clear_n = 0  # normal windows in a row while an event is open
        self._last_t: int | None = None  # time of the last scored window
        self._failure: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load and validate the bundle (raises :class:`~models.errors.ModelError`), start the worker."""
        self._install(self._load_checked())
        self._worker = threading.Thread(target=self._work, name="axedge-anomaly", daemon=True)
        self._worker.start()

    def close(self, timeout_secs: float = 5.0) -> list[AnomalyEvent]:
        """Score what is queued, stop the worker, close an open event; returns the last events."""
        if self._worker is not None:
            if self._worker.is_alive():  # a failed worker has already stopped
                self._queue.put(None, timeout=timeout_secs)
                self._worker.join(timeout_secs)
            self._worker = None
        with self._lock:
            if self._open is not None:
                self._emit(self._close_event())
        return self.drain_events()

    @property
    def model(self) -> Bundle | None:
        return self._model.bundle if self._model else None

    # ------------------------------------------------------------------ hot reload
    def _digest(self) -> str:
        try:
            return hashlib.sha256((self.model_dir / META_FILE).read_bytes()).hexdigest()
        except OSError:
            return ""

    def _load_checked(self) -> _Model:
        digest = self._digest()
        return _Model(load(self.model_dir), self.catalog, digest)

    def reload(self) -> bool:
        """Swap in the bundle on disk if it changed and is valid. Returns True when swapped; a bad
        bundle is refused (``last_reload_error``, ``reload_failures``) and the old one kept."""
        digest = self._digest()
        if self._model is not None and digest in (self._model.digest, self._rejected):
            return False
        try:
            new = self._load_checked()
        except ModelError as exc:
            self._rejected = digest
            self.last_reload_error = str(exc)
            self.stats.reload_failures += 1
            log.warning("model reload refused", extra={"model_dir": str(self.model_dir), "error": str(exc)})
            return False
        self._install(new)
        self.stats.reloads += 1
        self.last_reload_error = None
        log.info("model reloaded", extra={"model_dir": str(self.model_dir), "kind": new.bundle.kind})
        return True

    def _install(self, m: _Model) -> None:
        old = self._model
        self._model = m
        if old is not None and (old.ids.tolist(), old.window, old.period) == (m.ids.tolist(), m.window, m.period):
            return  # same inputs and grid: keep the stream state, the next window uses the new graph
        s = len(m.ids)
        self._id_to_col = np.full(int(m.ids.max()) + 1, -1, dtype=np.int64)
        self._id_to_col[m.ids] = np.arange(s)
        self._carry_t = np.full(s, -1, dtype=np.int64)
        self._carry_v = np.full(s, np.nan)
        self._pend = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
        self._next_grid: int | None = None
        self._grid_count = 0
        self._ring_v = np.empty((0, s))
        self._ring_r = np.empty((0, s), dtype=np.int8)
        self._ring_t = np.empty(0, np.int64)
        self._max_t = -1

    # ------------------------------------------------------------------ hot path (event loop)
    def process(self, batch: Any) -> list[AnomalyEvent]:
        """Feed samples (a ``SampleChunk`` or a ``SAMPLE_SCHEMA`` record batch); returns the
        anomaly events completed since the last call. Never blocks on inference."""
        m = self._model
        if m is None:
            raise ModelError("EdgeScorer.process() before start()")
        if self._failure is not None:
            raise ModelError(f"anomaly model {m.name}: inference failed in the worker: {self._failure}") from self._failure
        sid, t, v = _columns(batch)
        self.stats.samples_in += len(sid)
        known = sid < len(self._id_to_col)
        col = np.full(len(sid), -1, dtype=np.int64)
        col[known] = self._id_to_col[sid[known]]
        keep = col >= 0
        if keep.any():
            t, col, v = t[keep], col[keep], v[keep]
            if self._next_grid is not None:
                late = t < self._next_grid - m.period
                if late.any():
                    self.stats.samples_late += int(late.sum())
            pt, pc, pv = self._pend
            self._pend = (np.concatenate([pt, t]), np.concatenate([pc, col]), np.concatenate([pv, v]))
            self._max_t = max(self._max_t, int(t.max()))
            if self._next_grid is None:
                self._next_grid = -(-int(t.min()) // m.period) * m.period
            self._advance(m)
        return self.drain_events()

    def _advance(self, m: _Model) -> None:
        watermark = self._max_t - int(self.lateness_periods * m.period)
        if watermark < self._next_grid:
            return
        grid = np.arange(self._next_grid, watermark + 1, m.period, dtype=np.int64)
        s = len(m.ids)
        pt, pc, pv = self._pend
        seen = self._carry_t >= 0
        at = np.concatenate([self._carry_t[seen], pt])
        ac = np.concatenate([np.nonzero(seen)[0], pc])
        av = np.concatenate([self._carry_v[seen], pv])
        max_age = int(self.max_age_secs * 1e9) if self.max_age_secs is not None else int(self.max_age_periods * m.period)
        vals, age = align_with_age(at, ac, av, grid, s, max_age_ns=max_age)
        reason = np.zeros(vals.shape, dtype=np.int8)  # 0 ok, 1 missing, 2 stale, 3 bad
        nan = np.isnan(vals)
        reason[nan & (age < 0)] = 1
        reason[nan & (age > max_age)] = 2
        reason[nan & (age >= 0) & (age <= max_age)] = 3
        last = int(grid[-1])
        self._carry_t, self._carry_v = latest_per_column(at, ac, av, last, s)
        rest = pt > last
        self._pend = (pt[rest], pc[rest], pv[rest])
        self._next_grid = last + m.period
        self._windows(m, grid, vals, reason)

    def _windows(self, m: _Model, grid, vals, reason) -> None:
        w = m.window
        rv = np.concatenate([self._ring_v, vals])
        rr = np.concatenate([self._ring_r, reason])
        rt = np.concatenate([self._ring_t, grid])
        first = self._grid_count - len(self._ring_t)  # global index of rv[0]
        self._grid_count += len(grid)
        ends = np.arange(first + w - 1, self._grid_count)
        ends = ends[(ends - (w - 1)) % m.hop == 0]
        if len(ends):
            loc = ends - first
            x = np.lib.stride_tricks.sliding_window_view(rv, (w, rv.shape[1]))[:, 0][loc - w + 1]
            r = np.lib.stride_tricks.sliding_window_view(rr, (w, rr.shape[1]))[:, 0][loc - w + 1].max(axis=(1, 2))
            for code, name in enumerate(SKIP_REASONS, start=1):
                self.stats.windows_skipped[name] += int((r == code).sum())
            ok = r == 0
            if ok.any():
                self._enqueue(m, rt[loc[ok]], np.ascontiguousarray(x[ok], dtype=np.float32))
        cut = max(0, len(rt) - (w - 1))  # keep the last window - 1 rows
        self._ring_v, self._ring_r, self._ring_t = rv[cut:], rr[cut:], rt[cut:]

    def _enqueue(self, m: _Model, times, x) -> None:
        item = (m, times, x)
        self.stats.windows_enqueued += len(times)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = self._queue.get_nowait()
                except queue.Empty:
                    continue
                if old is None:  # closing: keep the sentinel, drop the new windows
                    self._queue.put_nowait(old)
                    self.stats.windows_dropped["closing"] = self.stats.windows_dropped.get("closing", 0) + len(times)
                    return
                self.stats.windows_dropped["queue_full"] = self.stats.windows_dropped.get("queue_full", 0) + len(old[1])

    # ------------------------------------------------------------------ worker thread
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            m, times, x = item
            st = self.stats
            t0 = time.perf_counter()
            try:
                score, contrib = m.bundle.run(x)
            except Exception as exc:  # noqa: BLE001 - not swallowed: process() raises it on the event loop
                name = type(exc).__name__
                st.errors[name] = st.errors.get(name, 0) + 1
                self._failure = exc
                log.error("anomaly inference failed, scorer stopped", extra={"model": m.name, "error": str(exc)})
                return
            dt = time.perf_counter() - t0
            st.inference_batches += 1
            st.inference_secs += dt
            st.latencies_us.append(dt * 1e6 / len(times))
            st.windows_scored += len(times)
            alarm = score > m.threshold
            st.anomalous_windows += int(alarm.sum())
            with self._lock:
                if len(self._scores) == self._scores.maxlen:
                    st.results_dropped["scores"] = st.results_dropped.get("scores", 0) + len(self._scores[0][1])
                self._scores.append((m.name, times, score, alarm))
                self._track(m, times, score, contrib, alarm)

    def _track(self, m: _Model, times, score, contrib, alarm) -> None:
        """Turn scored windows into events. An event starts at the first window of a run of at
        least ``on_delay_windows`` anomalous windows, ends at its last anomalous window, and is
        closed after ``off_delay_windows`` normal windows, or when no window was scored for more
        than two hops (inputs missing or stale: what ran before the gap is over)."""
        gap_ns = 2 * m.hop * m.period
        for i in range(len(times)):
            t = int(times[i])
            if self._last_t is not None and t - self._last_t > gap_ns:
                self._end_run()
            self._last_t = t
            if alarm[i]:
                self._clear_n = 0
                cur = self._open if self._open is not None else self._pending
                if cur is None or cur["model"] is not m:
                    self._end_run()
                    cur = self._pending = {"model": m, "start": t, "end": t, "peak": float(score[i]), "peak_t": t,
                                           "n": 0, "contrib": np.zeros(contrib.shape[1])}
                cur["end"] = t
                cur["n"] += 1
                cur["contrib"] += contrib[i]
                if score[i] > cur["peak"]:
                    cur["peak"], cur["peak_t"] = float(score[i]), t
                if self._open is None and cur["n"] >= self.on_delay_windows:
                    self._open, self._pending = cur, None
            else:
                self._pending = None  # a run shorter than the on-delay raises nothing
                if self._open is not None:
                    self._clear_n += 1
                    if self._clear_n >= self.off_delay_windows:
                        self._emit(self._close_event())

    def _end_run(self) -> None:
        self._pending = None
        if self._open is not None:
            self._emit(self._close_event())

    def _emit(self, event: AnomalyEvent) -> None:
        if len(self._events) == self._events.maxlen:
            self.stats.results_dropped["events"] = self.stats.results_dropped.get("events", 0) + 1
        self._events.append(event)

    def _close_event(self) -> AnomalyEvent:
        ev, self._open = self._open, None
        self._clear_n = 0
        self.stats.events += 1
        return self._event(ev)

    def current_event(self) -> AnomalyEvent | None:
        """The anomaly in progress (``end_ns`` = its latest anomalous window), or None: lets the
        agent publish a long anomaly before it ends."""
        with self._lock:
            return self._event(self._open) if self._open is not None else None

    def _event(self, ev: dict[str, Any]) -> AnomalyEvent:
        m: _Model = ev["model"]
        c = np.clip(ev["contrib"], 0, None)
        total = float(c.sum()) or 1.0
        top = np.argsort(c)[::-1][: self.top_k]
        return AnomalyEvent(
            model=m.name,
            start_ns=ev["start"],
            end_ns=ev["end"],
            peak_ns=ev["peak_t"],
            peak_score=ev["peak"],
            threshold=m.threshold,
            windows=ev["n"],
            top_signals=[(m.bundle.signals[j], float(c[j]) / total) for j in top],
        )

    # ------------------------------------------------------------------ results
    def drain_events(self) -> list[AnomalyEvent]:
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out

    def drain_scores(self):
        """Score rows since the last call as a pyarrow Table: ``time, model, score, anomaly``."""
        import pyarrow as pa

        with self._lock:
            parts = list(self._scores)
            self._scores.clear()
        if not parts:
            times, names, score, alarm = np.empty(0, np.int64), [], np.empty(0, np.float32), np.empty(0, bool)
        else:
            times = np.concatenate([p[1] for p in parts])
            names = [p[0] for p in parts for _ in range(len(p[1]))]
            score = np.concatenate([p[2] for p in parts])
            alarm = np.concatenate([p[3] for p in parts])
        # built from buffers: pa.array would import pandas into the agent (see dataset_builder.format)
        return pa.table(
            {
                "time": arrow_from_numpy(times.astype(np.int64, copy=False), TS_NS_UTC),
                "model": arrow_strings(names),
                "score": arrow_from_numpy(score.astype(np.float64), pa.float64()),
                "anomaly": arrow_bools(alarm),
            }
        )

    def wait_idle(self, timeout_secs: float = 10.0) -> bool:
        """True once every enqueued window is scored or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout_secs
        while time.monotonic() < deadline:
            st = self.stats
            if st.windows_scored + sum(st.windows_dropped.values()) >= st.windows_enqueued:
                return True
            time.sleep(0.005)
        return False


def _columns(batch: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """signal ids, source times (ns) and values (NaN for invalid/bad rows) from a chunk or batch."""
    if hasattr(batch, "signal_id") and hasattr(batch, "source_time_ns"):
        sid = np.asarray(batch.signal_id, dtype=np.int64)
        t = np.asarray(batch.source_time_ns, dtype=np.int64)
        v = np.asarray(batch.value, dtype=np.float64)
        q = np.asarray(batch.quality, dtype=np.uint32)
        if batch.valid is not None:
            v = np.where(batch.valid, v, np.nan)
    else:
        sid = numpy_values(batch.column("signal_id"), np.int32).astype(np.int64)
        t = numpy_values(batch.column("source_time"), np.int64)
        v = numpy_filled(batch.column("value"), np.float64, np.nan)
        q = numpy_values(batch.column("quality"), np.uint32)
    bad = (q >> 30) >= 2  # OPC UA severity bits 10 (bad): the sample is a gap
    if bad.any():
        v = np.where(bad, np.nan, v)
    return sid, t, v
