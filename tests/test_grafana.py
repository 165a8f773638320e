"""The Grafana dashboard and the Prometheus scrape config name only metrics the parts really export.

The exported names come from the code: each part's metrics registry is built here (the node's, the
processor's over a real :class:`~stream_processors.worker.Processor`, the trainer's, the dashboard's),
and its families give the sample names Prometheus stores (a counter ``x`` is ``x_total``, a histogram
``x`` is ``x_bucket``, ``x_count`` and ``x_sum``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "maximum-continual.json"
DATASOURCES = ROOT / "ops" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
#: functions and keywords of PromQL that look like names
_PROMQL_WORDS = {"sum", "max", "min", "by", "rate", "increase", "time", "histogram_quantile", "le"}


class _NullSink:
    async def example(self, key: bytes, value: bytes) -> None: ...
    async def dead_letter(self, key: bytes | None, value: bytes) -> None: ...
    async def put_state(self, partition: int, key: bytes, value: bytes) -> None: ...
    async def delete_state(self, partition: int, key: bytes) -> None: ...


class _Table(dict[str, bytes]):  # the reward-metrics table, in memory
    def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        return super().get(key, default)


def _registries() -> dict[str, CollectorRegistry]:
    from dashboard.prometheus import dashboard_registry
    from inference.metrics import NodeMetrics
    from stream_processors.prometheus import processor_registry
    from stream_processors.settings import ProcessorSettings
    from stream_processors.worker import Processor
    from trainer.metrics import SERVICE_COUNTERS, TrainerMetrics

    processor = Processor(
        ProcessorSettings(), predictions_topic="p", rewards_topic="r", state={}, metrics=_Table(), sink=_NullSink()
    )
    return {
        "inference-node": NodeMetrics().registry,
        "processor": processor_registry(processor),
        "trainer": TrainerMetrics(dict.fromkeys(SERVICE_COUNTERS, 0)).registry,
        "dashboard": dashboard_registry(dict),
    }


def _sample_names(name: str, kind: str) -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
    }.get(kind, ("",))
    return {name + suffix for suffix in suffixes}


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample names per part."""
    out: dict[str, set[str]] = {}
    for part, registry in _registries().items():
        out[part] = {n for family in registry.collect() for n in _sample_names(family.name, family.type)}
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_every_query_names_a_metric_a_part_exports(dashboard: dict[str, Any], exported: dict[str, set[str]]) -> None:
    every = set().union(*exported.values())
    for panel in _panels(dashboard):
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", re.sub(r"\{\{.*?\}\}|\[.*?\]", "", target["expr"])))
            metrics = {n for n in names if n.startswith("mc_")}
            assert metrics, (panel["title"], target["expr"])
            assert metrics <= every, (panel["title"], sorted(metrics - every))
            assert names - metrics <= _PROMQL_WORDS | {"group", "topic", "model_id", "adapter_version", "reason"} | {
                "instance",
                "partition",
                "outcome",
            }, (panel["title"], target["expr"])


def test_the_dashboard_covers_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(t["expr"] for p in _panels(dashboard) for t in p["targets"])
    for metric in (
        "mc_consumer_lag_messages",  # lag
        "mc_topic_events_total",  # events/s
        "mc_reward_mean",  # reward per model and version
        "mc_trainer_last_publish_timestamp_seconds",  # freshness
        "mc_inference_adapter_version",  # node versions
        "mc_dead_letters_total",  # dead letters
        "mc_trainer_tokens_per_second",  # trainer throughput
    ):
        assert metric in exprs, metric


def test_every_part_exports_a_family_of_its_own(exported: dict[str, set[str]]) -> None:
    """No two parts export one name (Prometheus would merge their series under one meaning)."""
    prefixes = {"inference-node": "mc_inference_", "processor": "mc_processor_", "trainer": "mc_trainer_"}
    for part, prefix in prefixes.items():
        assert all(n.startswith(prefix) for n in exported[part]), part
    parts = list(exported)
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            assert not exported[a] & exported[b], (a, b, exported[a] & exported[b])


def test_panels_use_the_provisioned_data_source(dashboard: dict[str, Any]) -> None:
    source = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    for panel in _panels(dashboard):
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
