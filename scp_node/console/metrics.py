"""``/metrics`` in the Prometheus text format, read from the database at each scrape, so the figures are
the whole node's (every process sharing the database, across restarts), not one process's counters.

The gauges are GROUP BY counts. The two histograms are aggregated by the database too (one GROUP BY over
the bucket of each masked event), and the part already settled is kept: a scrape aggregates only the
events added since the last one settled, so its cost follows the recent traffic, not the node's history.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from digimask.storage.models import State
from digimask.storage.overview import (
    Histogram,
    delivery_counts,
    last_event_id,
    masked_histograms,
    quarantine_reasons,
)
from digimask.storage.store import Store
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# An event ID seen this long ago is settled: every transaction that took a lower ID has committed by now
# (PostgreSQL hands out IDs before commit, so a later one may be visible first; the node's transactions
# last milliseconds).
SETTLE_S = 60.0


class MaskedHistograms:
    """The histograms of the masked events: the settled part (event IDs up to ``settled_id``) kept, the
    rest aggregated at each read. Thread-safe (the console serves requests from a thread pool)."""

    def __init__(self, store: Store, settle_s: float = SETTLE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.settle_s, self.clock = store, settle_s, clock
        self.settled_id = 0
        self.settled = {name: Histogram.empty(BUCKETS) for name in ("processing", "masking")}
        self.seen: deque[tuple[float, int]] = deque()  # (when, the last event ID then)
        self.lock = threading.Lock()

    def read(self) -> dict[str, Histogram]:
        with self.lock:
            now = self.clock()
            self.seen.append((now, last_event_id(self.store)))
            target = self.settled_id
            while self.seen and now - self.seen[0][0] >= self.settle_s:
                target = max(target, self.seen.popleft()[1])
            if target > self.settled_id:
                new = masked_histograms(self.store, BUCKETS, self.settled_id, target)
                self.settled = {name: self.settled[name] + new[name] for name in self.settled}
                self.settled_id = target
            recent = masked_histograms(self.store, BUCKETS, self.settled_id)
            return {name: self.settled[name] + recent[name] for name in self.settled}


class NodeCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store
        self.histograms = MaskedHistograms(store)

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
        h = self.histograms.read()
        yield _histogram("digimask_processing_seconds", "Receipt to masked output per instance (queue wait included)",
                         h["processing"])
        yield _histogram("digimask_masking_seconds", "Worker time per instance: read, de-identify, decode, mask, encode",
                         h["masking"])


def _histogram(name: str, documentation: str, h: Histogram) -> HistogramMetricFamily:
    buckets = [(str(b), n) for b, n in zip((*BUCKETS, "+Inf"), h.cumulative(), strict=True)]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=h.total)


def registry(store: Store) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(NodeCollector(store))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
