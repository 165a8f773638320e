"""One worker's figures as Prometheus metrics (``GET /metrics`` on faust's web server).

Read from the :class:`~stream_processors.worker.Processor` when Prometheus scrapes (a custom collector
on a registry of the worker's own, not the process-wide one), so the JSON pages and ``/metrics`` show
the same numbers and the hot path pays nothing for them:

* the worker's counters (in memory since it started, so they only go up; a restart is a counter
  reset, which ``rate()`` handles) as ``mc_processor_{name}_total``, dead letters as
  ``mc_processor_dead_letters_total{reason}``;
* event time per source ``partition``: newest event, watermark, idle;
* reward metrics per ``model_id`` and ``adapter_version`` over the partitions this worker owns: gauges,
  since the rows move with their partitions at a rebalance (the dashboard merges every worker's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_processors.worker import Processor

__all__ = ["COUNTERS", "ProcessorCollector", "processor_registry"]

#: counters exported at 0 before their first increment (others appear with it)
COUNTERS = (
    "records",
    "joined",
    "replayed",
    "duplicate_predictions",
    "duplicate_rewards",
    "rewards_waiting",
    "records_out_of_order",
    "expired_states",
    "expired_unmatched_predictions",
    "expired_unmatched_rewards",
)
_DEAD = "dead_letters"


def processor_registry(proc: Processor) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ProcessorCollector(proc))
    return registry


class ProcessorCollector(Collector):
    def __init__(self, proc: Processor) -> None:
        self.proc = proc

    def collect(self) -> Iterator[Metric]:
        proc = self.proc
        counters = dict(proc.counters)
        for name in sorted({*COUNTERS, *(k for k in counters if "." not in k and k != _DEAD)}):
            family = CounterMetricFamily(f"mc_processor_{name}", f"{name.replace('_', ' ')} (this worker)")
            family.add_metric([], counters.get(name, 0))
            yield family
        dead = CounterMetricFamily(
            "mc_processor_dead_letters", "records this worker dead-lettered, by reason", labels=["reason"]
        )
        for counter, n in sorted(counters.items()):
            if counter.startswith(f"{_DEAD}."):
                dead.add_metric([counter.removeprefix(f"{_DEAD}.")], n)
        yield dead

        stats = proc.stats()
        states = GaugeMetricFamily("mc_processor_states_indexed", "join states waiting in the expiry index")
        states.add_metric([], stats.states_indexed)
        yield states
        assigned = GaugeMetricFamily("mc_processor_assigned_partitions", "source partitions this worker owns")
        assigned.add_metric([], len(stats.assigned or []))
        yield assigned
        since_join = GaugeMetricFamily(
            "mc_processor_seconds_since_last_join", "seconds since this worker last emitted a training example"
        )
        if stats.last_join_at is not None:
            since_join.add_metric([], time.monotonic() - stats.last_join_at)
        yield since_join

        event = GaugeMetricFamily(
            "mc_processor_event_time_timestamp_seconds", "newest event time seen, per partition", labels=["partition"]
        )
        watermark = GaugeMetricFamily(
            "mc_processor_watermark_timestamp_seconds", "what expiry compares deadlines with", labels=["partition"]
        )
        idle = GaugeMetricFamily(
            "mc_processor_partition_idle",
            "1: no record for a while, the watermark follows the wall clock",
            labels=["partition"],
        )
        for partition, clock in sorted(stats.watermarks.items()):
            key = [str(partition)]
            if clock.event_ms is not None:
                event.add_metric(key, clock.event_ms / 1000)
            if clock.watermark_ms is not None:
                watermark.add_metric(key, clock.watermark_ms / 1000)
            idle.add_metric(key, int(clock.idle))
        yield from (event, watermark, idle)

        mv = ["model_id", "adapter_version"]
        count = GaugeMetricFamily("mc_processor_reward_count", "rewards joined, over the partitions owned", labels=mv)
        mean = GaugeMetricFamily("mc_processor_reward_mean", "mean reward, over the partitions owned", labels=mv)
        ema = GaugeMetricFamily("mc_processor_reward_ema", "reward mean weighted by event time", labels=mv)
        last = GaugeMetricFamily("mc_processor_reward_last_timestamp_seconds", "newest event time counted", labels=mv)
        for row in proc.reward_metrics():
            key = [row.model_id, str(row.adapter_version)]
            count.add_metric(key, row.count)
            if row.mean is not None:
                mean.add_metric(key, row.mean)
            if row.ema is not None:
                ema.add_metric(key, row.ema)
            if row.last_update_ms:
                last.add_metric(key, row.last_update_ms / 1000)
        yield from (count, mean, ema, last)
