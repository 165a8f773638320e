"""Counters and load latencies of one node: JSON for /status, Prometheus exposition for /metrics.

Prometheus text is written by ``prometheus_client`` from one :class:`CollectorRegistry` per node (not
the process-wide default one), so tests that start several nodes in one process do not collide.

* every name of :data:`COUNTERS` is a Prometheus counter ``mc_inference_{name}_total``, except the
  refusals, which are one counter per kind with a ``reason`` label
  (``mc_inference_updates_refused_total{reason="unsigned"}``,
  ``mc_inference_requests_refused_total{reason="unauthorized"}``); their sum is the total.
* adapter loads (download, verify and vLLM's load) are the histogram
  ``mc_inference_adapter_load_seconds``: its ``_count`` and ``_sum`` only go up, so ``rate()`` works
  (the JSON ``load_ms`` summary keeps a window of recent loads for people reading /status).
* chat requests per ``model_id`` and the ``adapter_version`` that answered, by outcome
  (``mc_inference_model_requests_total``), and their latency to vLLM's answer per ``model_id``
  (``mc_inference_request_seconds``).
* what is live is read when Prometheus scrapes (:meth:`NodeMetrics.exposition`): the alias table's
  versions per ``model_id``, in-flight requests, canaries, whether the node caught up.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inference.api import LiveAdapter

__all__ = ["CONTENT_TYPE", "COUNTERS", "LOAD_BUCKETS_S", "REFUSAL_REASONS", "REQUEST_BUCKETS_S", "NodeMetrics"]

#: the content type of :meth:`NodeMetrics.exposition` (Prometheus' text format 0.0.4)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: every counter the node keeps (all start at 0 so dashboards see them before the first event)
COUNTERS = (
    "updates_seen",
    "updates_invalid",
    "updates_skipped",
    "verify_failures",
    "load_failures",
    "loads",
    "swaps",
    "canaries",
    "canary_failures",
    "canary_promote",
    "canary_refuse",
    "canary_inconclusive",
    "unloads",
    "unload_failures",
    "requests",
    "requests_canary",
    "requests_failed",
    "requests_retried",
    # requests the node's HTTP edge turned away before they reached vLLM, by reason
    "requests_refused_unauthorized",
    "requests_refused_too_large",
    "requests_refused_invalid",
    # adapter updates not signed by a trainer or pointing elsewhere (schemas.signing), by reason
    "updates_refused",
    "updates_refused_unsigned",
    "updates_refused_bad_signature",
    "updates_refused_foreign_uri",
)

#: the labelled refusal counters and the reasons shown at 0 before the first refusal
REFUSAL_REASONS = {
    "updates": ("unsigned", "bad_signature", "foreign_uri"),
    "requests": ("unauthorized", "too_large", "invalid"),
}

#: adapter loads take tens of milliseconds at vLLM, seconds with a large download
LOAD_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: a chat turn on a CPU vLLM takes seconds; on a GPU, tens of milliseconds
REQUEST_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class NodeMetrics:
    content_type = CONTENT_TYPE

    def __init__(self, window: int = 1000) -> None:
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._load_ms: deque[float] = deque(maxlen=window)
        self.registry = CollectorRegistry()
        self._refused = {
            kind: PromCounter(
                f"mc_inference_{kind}_refused",
                f"{kind} the node refused, by reason",
                ["reason"],
                registry=self.registry,
            )
            for kind in REFUSAL_REASONS
        }
        for kind, reasons in REFUSAL_REASONS.items():
            for reason in reasons:
                self._refused[kind].labels(reason=reason)
        self._plain: dict[str, PromCounter] = {}
        for name in COUNTERS:
            if self._refusal(name) is None and name != "updates_refused":
                self._plain_counter(name)
        self._load = Histogram(
            "mc_inference_adapter_load_seconds",
            "time to download, verify and load one adapter version into vLLM",
            buckets=LOAD_BUCKETS_S,
            registry=self.registry,
        )
        # per model and version: the contract's labels; a version's series stop growing once it is replaced
        self._answered = PromCounter(
            "mc_inference_model_requests",
            "chat requests per model_id and the adapter_version that answered, by outcome (ok, failed)",
            ["model_id", "adapter_version", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "mc_inference_request_seconds",
            "time from a chat request to vLLM's answer (its head, for a stream), per model_id",
            ["model_id"],
            buckets=REQUEST_BUCKETS_S,
            registry=self.registry,
        )
        self._live = _LiveCollector()
        self.registry.register(self._live)

    @staticmethod
    def _refusal(name: str) -> tuple[str, str] | None:
        for kind in REFUSAL_REASONS:
            prefix = f"{kind}_refused_"
            if name.startswith(prefix):
                return kind, name.removeprefix(prefix)
        return None

    def _plain_counter(self, name: str) -> PromCounter:
        counter = self._plain.get(name)
        if counter is None:
            counter = self._plain[name] = PromCounter(
                f"mc_inference_{name}", f"{name.replace('_', ' ')} (node counter)", registry=self.registry
            )
        return counter

    def inc(self, name: str, by: int = 1) -> None:
        self.counters[name] += by
        refusal = self._refusal(name)
        if refusal is not None:
            self._refused[refusal[0]].labels(reason=refusal[1]).inc(by)
        elif name != "updates_refused":  # the sum of the labelled family; /status keeps it as a number
            self._plain_counter(name).inc(by)

    def answered(self, model_id: str, version: int, seconds: float, *, ok: bool) -> None:
        """One chat request's outcome at vLLM, attributed to the version that answered it."""
        self._answered.labels(model_id=model_id, adapter_version=str(version), outcome="ok" if ok else "failed").inc()
        self._latency.labels(model_id=model_id).observe(seconds)

    def observe_load(self, ms: float) -> None:
        self._load_ms.append(ms)
        self._load.observe(ms / 1000)

    def load_summary(self) -> dict[str, float]:
        values = list(self._load_ms)
        if not values:
            return {"count": 0.0}
        return {
            "count": float(len(values)),
            "last": round(values[-1], 3),
            "p50": round(statistics.median(values), 3),
            "max": round(max(values), 3),
        }

    def exposition(self, models: dict[str, LiveAdapter], caught_up: bool) -> bytes:
        """The registry in Prometheus' text format, with ``models`` and ``caught_up`` as they are now."""
        self._live.models, self._live.caught_up = dict(models), caught_up
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    """Gauges of what the node serves, read at scrape time (models come and go: no stale series)."""

    def __init__(self) -> None:
        self.models: dict[str, LiveAdapter] = {}
        self.caught_up = False

    def collect(self) -> Iterator[Metric]:
        caught_up = GaugeMetricFamily("mc_inference_caught_up", "1 once the node read adapter-updates to its end")
        caught_up.add_metric([], int(self.caught_up))
        version = GaugeMetricFamily(
            "mc_inference_adapter_version", "adapter version live on this node (0 = base)", labels=["model_id"]
        )
        since = GaugeMetricFamily(
            "mc_inference_adapter_live_since_timestamp_seconds",
            "unix time the live version started serving on this node",
            labels=["model_id", "adapter_version"],
        )
        in_flight = GaugeMetricFamily("mc_inference_in_flight", "requests at vLLM now, per model", labels=["model_id"])
        canary = GaugeMetricFamily(
            "mc_inference_adapter_canary_version",
            "adapter version under canary on this node (absent: none)",
            labels=["model_id"],
        )
        for model_id, live in sorted(self.models.items()):
            version.add_metric([model_id], live.version)
            since.add_metric([model_id, str(live.version)], live.live_since)
            in_flight.add_metric([model_id], live.in_flight)
            if live.canary is not None:
                canary.add_metric([model_id], live.canary.version)
        yield from (caught_up, version, since, in_flight, canary)
