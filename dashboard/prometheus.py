"""The dashboard's snapshot as Prometheus metrics (same figures as the page), via ``prometheus_client``.

The dashboard is the stack's exporter for what no single part knows: consumer lag and write rates
from Kafka, dead letters counted on their topic, rewards merged over every processor, and what each
inference node says is live. Its figures are read from the sampler's latest snapshot when
Prometheus scrapes (a custom collector), so a model or a node that goes away leaves no stale series.

Counters here are totals read from Kafka (end offsets, records on ``dead-letters``): they only go up
while the topics keep their records. Reward counts are gauges: they are summed over the processors
that answered this sample, so one worker's missed answer would look like a counter reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["SnapshotCollector", "dashboard_registry"]


def dashboard_registry(snapshot: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    """A registry of its own (not the process-wide one) exporting ``snapshot()`` at each scrape."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(snapshot))
    return registry


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        lag = snap.get("lag", [])
        tp = ["group", "topic", "partition"]
        lag_messages = GaugeMetricFamily("mc_consumer_lag_messages", "end offset minus committed offset", labels=tp)
        lag_seconds = GaugeMetricFamily("mc_consumer_lag_seconds", "age of the oldest unconsumed record", labels=tp)
        for r in lag:
            key = [r["group"], r["topic"], str(r["partition"])]
            lag_messages.add_metric(key, r["lag_messages"])
            if r.get("lag_seconds") is not None:
                lag_seconds.add_metric(key, r["lag_seconds"])
        yield lag_messages
        yield lag_seconds

        events = CounterMetricFamily("mc_topic_events", "records ever written (sum of end offsets)", labels=["topic"])
        for topic, n in snap.get("events_total", {}).items():
            events.add_metric([topic], n)
        yield events
        rates = GaugeMetricFamily("mc_topic_events_per_second", "write rate over the last samples", labels=["topic"])
        for topic, rate in snap.get("events_per_s", {}).items():
            rates.add_metric([topic], rate)
        yield rates

        dead = CounterMetricFamily(
            "mc_dead_letters", "dead letters per reason, counted on the dead-letters topic", labels=["reason"]
        )
        for reason, n in snap.get("dead_letters_by_reason", {}).items():
            dead.add_metric([reason], n)
        yield dead

        mv = ["model_id", "adapter_version"]
        mean = GaugeMetricFamily("mc_reward_mean", "mean reward per model and adapter version", labels=mv)
        count = GaugeMetricFamily(
            "mc_reward_count", "rewards joined per model and adapter version, over the processors", labels=mv
        )
        for r in snap.get("rewards", []):
            key = [r["model_id"], str(r["adapter_version"])]
            count.add_metric(key, r["count"])
            if r["mean"] is not None:
                mean.add_metric(key, r["mean"])
        yield mean
        yield count

        nodes = snap.get("inference_nodes", [])
        live = GaugeMetricFamily(
            "mc_inference_live_version", "adapter version live on each inference node", labels=["node", "model_id"]
        )
        canary = GaugeMetricFamily(
            "mc_inference_canary_version",
            "adapter version under canary on each inference node (absent: none)",
            labels=["node", "model_id"],
        )
        refused = CounterMetricFamily(
            "mc_inference_refused",
            "adapter updates and requests an inference node refused, by reason",
            labels=["node", "reason"],
        )
        for n in nodes:
            node = str(n["node_id"])
            for model_id, version in n["live"].items():
                live.add_metric([node, model_id], version)
            for model_id, c in n.get("canary", {}).items():
                canary.add_metric([node, model_id], c["version"])
            for reason, value in n.get("refused", {}).items():
                refused.add_metric([node, reason], value)
        yield live
        yield canary
        yield refused
