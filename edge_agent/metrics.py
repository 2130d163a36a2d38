"""Prometheus metrics for one agent (a registry per agent: no module-level state).

Every component feeds the same counters (CONVENTIONS 5): received, committed, dropped{reason},
errors{type}, buffer rows/bytes, connector state, batch flush reasons. The plain counters that
connectors and sinks update (``ConnectorMetrics``, ``SinkMetrics``) are exported through a
custom collector, so the hot path touches plain ints, not Prometheus objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from connectors.base import ConnectorMetrics
    from edge_agent.sinks.base import SinkMetrics

CONNECTOR_STATES = ("starting", "connected", "failing", "stopped")


class _ComponentCollector(Collector):
    def __init__(self, agent_metrics: AgentMetrics) -> None:
        self.m = agent_metrics

    def collect(self) -> Iterable:
        received = CounterMetricFamily("axedge_samples_received", "Samples emitted by connectors", labels=["connector"])
        errors = CounterMetricFamily("axedge_errors", "Errors by component and type", labels=["component", "type"])
        dropped = CounterMetricFamily("axedge_samples_dropped", "Samples dropped, by stage and reason", labels=["stage", "reason"])
        quarantined = CounterMetricFamily("axedge_payloads_quarantined", "Bad payloads kept in quarantine", labels=["connector", "reason"])
        gaps = CounterMetricFamily("axedge_gap_markers", "Bad-quality gap rows emitted for failed reads", labels=["connector"])
        state = GaugeMetricFamily("axedge_connector_state", "1 for the connector unit's current state", labels=["connector", "state"])
        committed = CounterMetricFamily("axedge_samples_committed", "Samples committed by sinks", labels=["sink"])
        files = CounterMetricFamily("axedge_files_committed", "Files committed by sinks", labels=["sink"])
        buf_rows = GaugeMetricFamily("axedge_buffer_rows", "Rows held in the sink's buffer", labels=["sink"])
        buf_bytes = GaugeMetricFamily("axedge_buffer_bytes", "Bytes held in the sink's buffer", labels=["sink"])
        read_backs = CounterMetricFamily("axedge_buffer_read_backs", "Batches the sink read back from the durable "
                                         "buffer's store (not from its write-through cache)", labels=["sink"])
        conn_events = CounterMetricFamily("axedge_connector_events", "Protocol events that are not errors "
                                          "(e.g. Sparkplug rebirth requests)", labels=["connector", "event"])
        for name, cm in self.m.connectors.items():
            received.add_metric([name], cm.received)
            for t, n in cm.events.items():
                conn_events.add_metric([name, t], n)
            gaps.add_metric([name], cm.gaps)
            for t, n in cm.errors.items():
                errors.add_metric([name, t], n)
            for r, n in cm.dropped.items():
                dropped.add_metric([f"connector:{name}", r], n)
            for r, n in cm.quarantined.items():
                quarantined.add_metric([name, r], n)
        for name, st in self.m.states.items():
            for s in CONNECTOR_STATES:
                state.add_metric([name, s], 1.0 if st() == s else 0.0)
        sink_events = CounterMetricFamily("axedge_sink_events", "Sink-specific events (replays skipped, files quarantined, ...)", labels=["sink", "event"])
        for name, sm in self.m.sinks.items():
            for ev, n in sm.extra().items():
                sink_events.add_metric([name, ev], n)
            committed.add_metric([name], sm.committed_rows)
            files.add_metric([name], sm.committed_files)
            for t, n in sm.errors.items():
                errors.add_metric([f"sink:{name}", t], n)
            for r, n in sm.dropped.items():
                dropped.add_metric([f"sink:{name}", r], n)
        for name, fn in self.m.buffers.items():
            rows, nbytes, backs = fn()
            buf_rows.add_metric([name], rows)
            buf_bytes.add_metric([name], nbytes)
            read_backs.add_metric([name], backs)
        for (stage, reason), n in self.m.core_dropped.items():
            dropped.add_metric([stage, reason], n)
        scored = CounterMetricFamily("axedge_anomaly_windows_scored", "Windows scored by the anomaly model", labels=["processor"])
        skipped = CounterMetricFamily("axedge_anomaly_windows_skipped", "Windows not scored (missing, stale or bad inputs)", labels=["processor", "reason"])
        events = CounterMetricFamily("axedge_anomaly_events", "Anomaly events finished", labels=["processor"])
        latency = GaugeMetricFamily("axedge_anomaly_latency_seconds", "Per-window inference latency (recent)", labels=["processor", "quantile"])
        for name, fn in self.m.processors.items():
            st = fn()
            scored.add_metric([name], st["windows_scored"])
            events.add_metric([name], st["events"])
            for r, n in st["windows_skipped"].items():
                skipped.add_metric([name, r], n)
            for r, n in st["windows_dropped"].items():
                dropped.add_metric([f"processor:{name}", r], n)
            for q, us in st["latency_us"].items():
                latency.add_metric([name, q], us / 1e6)
        yield from (received, errors, dropped, quarantined, gaps, state, committed, files, buf_rows, buf_bytes, read_backs,
                    sink_events, conn_events, scored, skipped, events, latency)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connectors: dict[str, ConnectorMetrics] = {}
        self.states: dict[str, Callable[[], str]] = {}
        self.sinks: dict[str, SinkMetrics] = {}
        self.buffers: dict[str, Callable[[], tuple[int, int]]] = {}
        self.core_dropped: dict[tuple[str, str], int] = {}
        self.processors: dict[str, Callable[[], dict]] = {}
        self.flushes = Counter("axedge_batch_flushes", "Batches flushed by the core, by reason", ["reason"], registry=self.registry)
        self.batch_rows = Counter("axedge_core_rows", "Rows batched by the core", registry=self.registry)
        self.reconnects = Counter("axedge_connector_reconnects", "Connector reconnect attempts", ["connector"], registry=self.registry)
        self.core_errors = Counter("axedge_core_errors", "Agent-level errors by type (e.g. catalog_save)", ["type"], registry=self.registry)
        self.up = Gauge("axedge_up", "1 while the agent runs", registry=self.registry)
        self.registry.register(_ComponentCollector(self))

    def count_dropped(self, stage: str, reason: str, rows: int) -> None:
        key = (stage, reason)
        self.core_dropped[key] = self.core_dropped.get(key, 0) + rows

    # ---- convenience totals (status line, /healthz, tests) ----
    def total_received(self) -> int:
        return sum(c.received for c in self.connectors.values())

    def total_committed(self) -> int:
        return sum(s.committed_rows for s in self.sinks.values())

    def total_dropped(self) -> int:
        n = sum(self.core_dropped.values())
        n += sum(sum(c.dropped.values()) for c in self.connectors.values())
        n += sum(sum(s.dropped.values()) for s in self.sinks.values())
        return n

    def total_errors(self) -> int:
        n = sum(sum(c.errors.values()) for c in self.connectors.values())
        return n + sum(sum(s.errors.values()) for s in self.sinks.values())
