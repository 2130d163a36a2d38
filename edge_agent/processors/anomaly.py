"""The anomaly processor: runs a model bundle (ONNX Runtime) beside collection.

It feeds every flushed batch to :class:`models.runtime.EdgeScorer` (vectorised, on the event
loop; inference happens in the scorer's worker thread behind its bounded queue, so a slow model
never stalls collection) and turns what comes back into ordinary samples:

* ``<asset>/anomaly_score.<id>``: one row per scored window (value = score, quality good), so
  scores land in the raw dataset and go upstream like any other signal;
* ``<asset>/anomaly_event.<id>``: one row per finished event, value = peak score, value_text =
  the event as JSON (start, end, peak, threshold, top contributing signals).

The model's inputs must exist in the signal catalog; connectors register their signals when they
connect, so the processor starts (and validates the bundle) once they are there, retrying every
``reload_check_secs`` (counted as ``waiting_for_inputs``). A changed bundle in ``model_dir`` is
hot-reloaded; a bad one is refused and the old model keeps running.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from dataset_builder.format import numpy_filled, numpy_values
from edge_agent.config.base import AssetPath, ComponentId, StrictModel
from edge_agent.core.chunk import SampleChunk
from edge_agent.signals import DataType, SignalCatalog, SignalSpec

log = logging.getLogger("axedge.processor.anomaly")


class AnomalyProcessorConfig(StrictModel):
    """Scores a model bundle (``model.onnx`` + ``model.json``) on the live data."""

    id: ComponentId = Field(description="Processor id; names the score and event signals")
    type: Literal["anomaly"]
    model_dir: Path = Field(description="Bundle directory (from `axedge model train`); watched for hot reload")
    asset: AssetPath = Field(description="Asset path under which scores and events are recorded")
    reload_check_secs: float = Field(5.0, gt=0, le=3600, description="How often the bundle directory is checked for a new model")
    max_queue_batches: int = Field(64, ge=1, description="Bounded queue in front of the inference thread (drop_oldest, counted)")
    max_input_age_secs: float | None = Field(
        None, gt=0, le=86400,
        description="How long an input's last value stays usable on the model grid (default: 3 grid periods). Raise it for "
        "report-by-exception inputs (OPC UA subscriptions, MQTT on change) that send nothing while a value holds still; "
        "train on data curated with the same fill limit")
    on_delay_windows: int = Field(1, ge=1, le=1000, description="Alarm on-delay: anomalous windows in a row before an event "
                                  "opens (the event still starts at the first of them); filters one-window spikes")
    off_delay_windows: int = Field(1, ge=1, le=1000, description="Alarm off-delay: normal windows in a row before an open "
                                   "event closes; keeps a flickering anomaly one event")


class AnomalyProcessor:
    def __init__(self, config: AnomalyProcessorConfig, catalog: SignalCatalog, clock=time.monotonic,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.catalog = catalog
        self.clock = clock
        self.scorer = None
        self.state = "waiting_for_inputs"
        self.last_error: str | None = None
        self.waiting_checks = 0
        self.on_event = on_event or (lambda event: None)
        self._next_check = 0.0
        self._score_id: int | None = None
        self._event_id: int | None = None

    def _try_start(self) -> None:
        from models.errors import ModelError
        from models.runtime import EdgeScorer

        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + self.config.reload_check_secs
        scorer = EdgeScorer(self.config.model_dir, self.catalog, max_queue_batches=self.config.max_queue_batches,
                            on_delay_windows=self.config.on_delay_windows, off_delay_windows=self.config.off_delay_windows,
                            max_age_secs=self.config.max_input_age_secs)
        try:
            scorer.start()
        except ModelError as exc:
            self.waiting_checks += 1
            if self.last_error != str(exc):
                log.warning("anomaly model not started yet", extra={"processor": self.config.id, "error": str(exc)})
            self.last_error = str(exc)
            return
        self.scorer = scorer
        self.state = "running"
        self.last_error = None
        cid = f"processor:{self.config.id}"
        self._score_id = self.catalog.register(SignalSpec(
            name=f"anomaly_score.{self.config.id}", asset=self.config.asset, dtype=DataType.float64,
            address=f"model://{self.config.model_dir.name}", connector=cid,
            description=f"anomaly score of model {scorer.model.kind} (threshold {scorer.model.threshold:.4g})"))
        self._event_id = self.catalog.register(SignalSpec(
            name=f"anomaly_event.{self.config.id}", asset=self.config.asset, dtype=DataType.json,
            address=f"model://{self.config.model_dir.name}", connector=cid,
            description="finished anomaly events: value = peak score, value_text = event JSON"))
        log.info("anomaly model running", extra={"processor": self.config.id, "kind": scorer.model.kind,
                                                  "inputs": len(scorer.model.signals)})

    def process(self, batch: pa.RecordBatch) -> list[SampleChunk]:
        """Feed one flushed batch; return the score and event samples to emit."""
        if self.scorer is None:
            self._try_start()
            if self.scorer is None:
                return []
        elif self.clock() >= self._next_check:
            self._next_check = self.clock() + self.config.reload_check_secs
            self.scorer.reload()
        events = self.scorer.process(batch)
        return self._to_chunks(events)

    def _to_chunks(self, events) -> list[SampleChunk]:
        out: list[SampleChunk] = []
        scores = self.scorer.drain_scores()
        if scores.num_rows:
            t = numpy_values(scores.column("time"), np.int64)
            v = numpy_filled(scores.column("score"), np.float64, np.nan)
            out.append(SampleChunk.from_values(np.full(len(t), self._score_id), v, source_time_ns=t))
        if events:
            recs = [{**e.to_dict(), "processor": self.config.id, "asset": self.config.asset} for e in events]
            for r in recs:
                self.on_event(r)
            c = SampleChunk.from_values(
                np.full(len(recs), self._event_id), [r["peak_score"] for r in recs],
                source_time_ns=np.array([r["start_ns"] for r in recs], dtype=np.int64))
            c.text = [json.dumps(r) for r in recs]
            out.append(c)
        return out

    def close(self) -> list[SampleChunk]:
        if self.scorer is None:
            return []
        events = self.scorer.close()
        chunks = self._to_chunks(events)
        self.state = "stopped"
        return chunks

    def stats(self) -> dict[str, Any]:
        s = self.scorer.stats if self.scorer else None
        return {
            "state": self.state,
            "last_error": self.last_error,
            "windows_scored": s.windows_scored if s else 0,
            "windows_skipped": dict(s.windows_skipped) if s else {},
            "windows_dropped": dict(s.windows_dropped) if s else {},
            "anomalous_windows": s.anomalous_windows if s else 0,
            "events": s.events if s else 0,
            "reloads": s.reloads if s else 0,
            "reload_failures": s.reload_failures if s else 0,
            "latency_us": s.latency_quantiles_us() if s else {},
        }
