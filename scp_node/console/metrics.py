"""``/metrics`` in the Prometheus text format, read from the database at each scrape, so the figures are
the whole node's (every process sharing the database), not one process's counters."""
from __future__ import annotations

from collections.abc import Iterator

from digimask.storage.models import State
from digimask.storage.overview import (
    delivery_counts,
    masking_seconds,
    processing_seconds,
    quarantine_reasons,
)
from digimask.storage.store import Store
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class NodeCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counts = self.store.counts()
        g = GaugeMetricFamily("digimask_instances", "Instances by state", labels=["state"])
        for state in State:
            g.add_metric([state.value], counts.get(state.value, 0))
        yield g
        g = GaugeMetricFamily("digimask_deliveries", "Deliveries by destination and state (done, failed, pending, sending)",
                              labels=["destination", "state"])
        for dest, states in sorted(delivery_counts(self.store).items()):
            for state, n in sorted(states.items()):
                g.add_metric([dest, state], n)
        yield g
        g = GaugeMetricFamily("digimask_quarantined", "Quarantined instances by reason", labels=["reason"])
        for reason, n in sorted(quarantine_reasons(self.store).items()):
            g.add_metric([reason[:120]], n)
        yield g
        yield _histogram("digimask_processing_seconds", "Receipt to masked output per instance (queue wait included)",
                         processing_seconds(self.store))
        yield _histogram("digimask_masking_seconds", "Worker time per instance: read, de-identify, decode, mask, encode",
                         masking_seconds(self.store))


def _histogram(name: str, documentation: str, times: list[float]) -> HistogramMetricFamily:
    cumulative = [(str(b), sum(t <= b for t in times)) for b in BUCKETS] + [("+Inf", len(times))]
    return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=sum(times))


def registry(store: Store) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(NodeCollector(store))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
