"""`/prometheus`: text format 0.0.4 via prometheus-client. Counters and per-queue gauges
are read from the engine at scrape time (a custom collector: nothing is updated per
job); push/pull/ack latency histograms are observed by the job routes into plain counters (one
list increment per request; prometheus-client's lock-and-loop histogram cost more than the
engine call it measured) and exposed at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hopper.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Milliseconds, as the reference page documents (`bunqueue_*_duration_ms`).
BUCKETS_MS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000)
# `bunqueue_connections{transport}` labels as bunqueue 2.9.5 writes them (`/health`'s
# `connections` keeps the documented `ws`).
TRANSPORT_LABELS = {"ws": "websocket"}


class LatencyHistogram:
    """Counts per bucket (upper bounds `BUCKETS_MS`, then +Inf) and a running sum."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.sum = 0.0

    def observe(self, ms: float) -> None:
        self.counts[bisect_left(BUCKETS_MS, ms)] += 1
        self.sum += ms

    def mean(self) -> float:
        """The average latency in ms (0 before the first observation)."""
        n = sum(self.counts)
        return self.sum / n if n else 0.0

    def family(self) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, n in zip((*(str(b) for b in BUCKETS_MS), "+Inf"), self.counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return HistogramMetricFamily(self.name, self.help, buckets=cumulative, sum_value=self.sum)


class _EngineCollector(Collector):
    def __init__(
        self, engine: Engine, connections: dict[str, int], histograms: list[LatencyHistogram]
    ) -> None:
        self._engine = engine
        self._connections = connections
        self._histograms = histograms

    def collect(self) -> Iterator[Metric]:
        engine = self._engine
        stats = engine.stats()
        for name, key, text in (
            ("bunqueue_jobs_pushed", "pushed", "Total jobs pushed"),
            ("bunqueue_jobs_pulled", "pulled", "Total jobs pulled"),
            ("bunqueue_jobs_completed", "completed", "Total jobs completed"),
            ("bunqueue_jobs_failed", "failed", "Total jobs failed for good"),
            ("hopper_jobs_retried", "retried", "Total failed attempts scheduled for retry"),
            ("hopper_jobs_stalled", "stalled", "Total stalled leases"),
        ):
            yield CounterMetricFamily(name, text, value=stats[key])
        totals = engine.counts()
        for state, metric in (
            ("waiting", "waiting"),
            ("active", "active"),
            ("delayed", "delayed"),
            ("failed", "dlq"),
            ("completed", "completed"),
        ):
            yield GaugeMetricFamily(
                f"bunqueue_jobs_{metric}", f"Jobs {metric} (all queues)", value=totals[state]
            )
        per_queue = {
            metric: GaugeMetricFamily(
                f"bunqueue_queue_jobs_{metric}", f"Jobs {metric} per queue", labels=["queue"]
            )
            for metric in ("waiting", "active", "delayed", "dlq", "completed", "waiting_children")
        }
        for queue in engine.queues():
            counts = engine.counts(queue)
            per_queue["waiting"].add_metric([queue], counts["waiting"])
            per_queue["active"].add_metric([queue], counts["active"])
            per_queue["delayed"].add_metric([queue], counts["delayed"])
            per_queue["dlq"].add_metric([queue], counts["failed"])
            per_queue["completed"].add_metric([queue], counts["completed"])
            per_queue["waiting_children"].add_metric([queue], counts["waiting-children"])
        yield from per_queue.values()
        connections = GaugeMetricFamily(
            "bunqueue_connections", "Open connections", labels=["transport"]
        )
        for transport, n in self._connections.items():
            connections.add_metric([TRANSPORT_LABELS.get(transport, transport)], n)
        yield connections
        for histogram in self._histograms:
            yield histogram.family()


class Metrics:
    def __init__(self, engine: Engine, connections: dict[str, int]) -> None:
        def histogram(op: str) -> LatencyHistogram:
            return LatencyHistogram(
                f"bunqueue_{op}_duration_ms", f"{op.capitalize()} latency in ms"
            )

        self._push = histogram("push")
        self._pull = histogram("pull")
        self._ack = histogram("ack")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(
            _EngineCollector(engine, connections, [self._push, self._pull, self._ack])
        )

    def observe_push(self, seconds: float) -> None:
        self._push.observe(seconds * 1000)

    def observe_pull(self, seconds: float) -> None:
        self._pull.observe(seconds * 1000)

    def observe_ack(self, seconds: float) -> None:
        self._ack.observe(seconds * 1000)

    def averages_ms(self) -> tuple[float, float, float]:
        """The mean push, pull and ack latencies in ms."""
        return self._push.mean(), self._pull.mean(), self._ack.mean()

    def render(self) -> bytes:
        return generate_latest(self.registry)
