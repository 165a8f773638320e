"""The trainer's Prometheus metrics, and the small HTTP server ``mc trainer`` serves them on.

One :class:`CollectorRegistry` per service (not the process-wide one), so tests that run several
trainers in one process do not collide. Two sources:

* the service's counters (``TrainerService.counters``: examples read, skipped, invalid, windows,
  failures, dead letters, retries), read when Prometheus scrapes, as ``mc_trainer_{name}_total``;
  they live in memory and only go up (a restart is a counter reset, which ``rate()`` handles);
* what the worker reports per ``model_id`` when a window is done (:meth:`TrainerMetrics.published`,
  :meth:`TrainerMetrics.version_refused`): versions published and refused, examples trained, the
  train time as a histogram, tokens and tokens/s, the version and time of the last publication.

The process's peak RSS (``getrusage``) is read at each scrape: training's memory is the limit that
decides how large a window may be (``trainer/README.md``).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator, Mapping
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["REFUSAL_REASONS", "SERVICE_COUNTERS", "TRAIN_BUCKETS_S", "MetricsServer", "TrainerMetrics", "serve_metrics"]

#: the service's counters (``TrainerService.counters``), each ``mc_trainer_{name}_total``
SERVICE_COUNTERS = (
    "examples",  # examples read from training-examples
    "skipped",  # ... already trained on (a re-delivery)
    "invalid",  # ... that did not decode (dead-lettered)
    "windows",  # windows published
    "empty_windows",  # windows without assistant tokens: nothing to train
    "window_failures",  # failed attempts at a window
    "dead_lettered_windows",  # windows that failed every attempt
    "dead_lettered_examples",
    "transient_retries",  # S3 or Kafka failures retried
    "kafka_errors",
)

#: why a version the trainer made was not published under its number
REFUSAL_REASONS = (
    "taken",  # the number holds another adapter (another window or parent): retrained on top of it
    "abandoned",  # another writer's files and no manifest: the number is given up, the next one used
)

#: a window trains in seconds on a GPU, minutes on two CPU cores
TRAIN_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)


class TrainerMetrics:
    def __init__(self, counters: Mapping[str, int]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_ServiceCollector(counters))
        mid = ["model_id"]
        r = self.registry
        self._published = Counter("mc_trainer_versions_published", "adapter versions published", mid, registry=r)
        self._refused = Counter(
            "mc_trainer_versions_refused",
            "versions not published under their number, by reason (taken: retrained; abandoned: number given up)",
            ["model_id", "reason"],
            registry=r,
        )
        self._examples = Counter("mc_trainer_examples_trained", "examples in published windows", mid, registry=r)
        self._tokens = Counter("mc_trainer_tokens", "tokens trained on (all steps)", mid, registry=r)
        self._train_s = Histogram(
            "mc_trainer_train_seconds", "time to train one window", mid, buckets=TRAIN_BUCKETS_S, registry=r
        )
        self._tokens_per_s = Gauge(
            "mc_trainer_tokens_per_second", "training throughput of the last window", mid, registry=r
        )
        self._version = Gauge("mc_trainer_adapter_version", "the last version published", mid, registry=r)
        self._published_at = Gauge(
            "mc_trainer_last_publish_timestamp_seconds", "unix time of the last publication", mid, registry=r
        )

    def published(self, model_id: str, version: int, *, examples: int, tokens: int, seconds: float) -> None:
        """A window was trained in ``seconds`` and published as ``version``."""
        self._published.labels(model_id).inc()
        self._examples.labels(model_id).inc(examples)
        self._tokens.labels(model_id).inc(tokens)
        self._train_s.labels(model_id).observe(seconds)
        if seconds > 0:
            self._tokens_per_s.labels(model_id).set(tokens / seconds)
        self._version.labels(model_id).set(version)
        self._published_at.labels(model_id).set(time.time())

    def version_refused(self, model_id: str, reason: str) -> None:
        self._refused.labels(model_id, reason).inc()


class _ServiceCollector(Collector):
    def __init__(self, counters: Mapping[str, int]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(dict(self._counters).items()):
            family = CounterMetricFamily(f"mc_trainer_{name}", f"{name.replace('_', ' ')} (trainer service counter)")
            family.add_metric([], value)
            yield family
        rss = GaugeMetricFamily("mc_trainer_peak_rss_bytes", "peak resident memory of the trainer process")
        rss.add_metric([], _peak_rss_bytes())
        yield rss


def _peak_rss_bytes() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


class MetricsServer:
    """``prometheus_client``'s HTTP server on a thread: ``GET /metrics`` of one registry."""

    def __init__(self, server: WSGIServer, thread: Thread) -> None:
        self._server, self._thread = server, thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` on ``host:port`` (0: any free port) until :meth:`MetricsServer.close`."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
