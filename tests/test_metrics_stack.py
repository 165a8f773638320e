"""Every long-running part's ``/metrics`` on the real stack, read with ``prometheus_client``'s parser.

One loop, end to end: two predictions and their rewards go to a real processor worker (its own
process), which joins them into training examples; the trainer trains them as one window and
publishes v1 to S3 and ``adapter-updates``; an inference node (its own process) loads v1 into the
running vLLM; the dashboard samples Kafka, the processor and the node. Then each part's ``/metrics``
is scraped over HTTP and must parse, hold the key families, and agree with what happened.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack import StackSettings
from devstack.checkpoint import ensure_checkpoint
from producers import EventPublisher, ProducerSettings
from schemas import Message, PredictionEvent, RewardEvent, TopicKey, topic_name
from schemas.storage import s3_client
from stream_processors.chaos import WorkerProcess, assigned
from tests.metrics_text import Labels, families, labels, samples
from tests.test_inference_fixtures import running_node, wait_for_version

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.vllm, pytest.mark.slow]

torch = pytest.importorskip("torch")


def _get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode(), resp.headers["content-type"]


def _scrape(url: str) -> tuple[dict[str, str], dict[tuple[str, Labels], float]]:
    text, ctype = _get(url)
    assert ctype.startswith("text/plain"), (url, ctype)
    return families(text), samples(text)


def _until(check: Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(check)
        time.sleep(0.5)


def _by_name(got: dict[tuple[str, Labels], float], name: str) -> dict[Labels, float]:
    return {lab: v for (n, lab), v in got.items() if n == name}


def test_every_part_serves_metrics_that_parse(
    kafka: StackSettings,
    s3: StackSettings,
    vllm: StackSettings,
    topics: Callable[..., ProducerSettings],
    tmp_path: Path,
) -> None:
    from dashboard import Collector, DashboardServer, DashboardSettings
    from trainer.metrics import serve_metrics
    from trainer.service import TrainerService, build_slot
    from trainer.settings import TrainerSettings

    settings = topics()
    tag = uuid.uuid4().hex[:8]
    mid, app_id = f"metrics-{tag}", f"metrics-{tag}"
    worker = WorkerProcess(settings, app_id, tmp_path / "processor", "a")
    trainer_settings = TrainerSettings(
        topic_prefix=settings.topic_prefix,
        base_model_path=ensure_checkpoint(s3.cache_dir),
        group_id=f"g-{tag}",
        work_dir=tmp_path / "trainer",
        window_examples=2,
        window_seconds=600,
        max_seq_len=96,
        lora_rank=8,
        target_modules=["q_proj", "v_proj"],
    )
    try:
        worker.wait(assigned)
        with EventPublisher(settings) as pub:
            for answer, reward in (("Apple.", 1.0), ("Banana.", 0.0)):
                pred = PredictionEvent(
                    model_id=mid,
                    base_model=settings.base_model_name,
                    messages=[Message(role="user", content="Name a fruit."), Message(role="assistant", content=answer)],
                )
                pub.publish_prediction(pred).result(30)
                pub.publish_reward(RewardEvent(prediction_id=pred.prediction_id, model_id=mid, reward=reward))
        worker.wait(lambda st: st.counters.get("joined", 0) >= 2)

        service = TrainerService(trainer_settings, slot=build_slot(trainer_settings))
        server = serve_metrics(service.metrics.registry, "127.0.0.1", 0)
        try:
            assert service.run(max_windows=1, idle_exit_s=120) == 1
            trainer_families, trainer = _scrape(f"http://127.0.0.1:{server.port}/metrics")
        finally:
            server.close()

        with running_node(settings.topic_prefix, tmp_path, node_id=f"{mid}-node") as node:
            wait_for_version(node, mid, 1, timeout_s=120)
            node_families, node_samples = _scrape(f"{node.base_url}/metrics")
            processor_families, processor = _scrape(f"http://127.0.0.1:{worker.port}/metrics")

            dash_settings = DashboardSettings(
                topic_prefix=settings.topic_prefix,
                dashboard_sample_s=0.5,
                processor_urls=f"http://127.0.0.1:{worker.port}",
                inference_urls=node.base_url,
            )
            dashboard = DashboardServer(Collector(dash_settings, group_prefix=app_id), "127.0.0.1", 0)
            dashboard.start()
            try:

                def rewards_sampled() -> bool:
                    got = samples(_get(f"{dashboard.url}/metrics")[0])
                    return _by_name(got, "mc_reward_count").get(labels(model_id=mid, adapter_version="0")) == 2

                _until(rewards_sampled)
                dashboard_families, dash = _scrape(f"{dashboard.url}/metrics")
            finally:
                dashboard.stop()
    finally:
        worker.stop()
        _clean(kafka, s3, settings, app_id, mid)

    # -- the node ---------------------------------------------------------------------------------
    assert node_families["mc_inference_adapter_load_seconds"] == "histogram"
    assert node_families["mc_inference_updates_refused"] == "counter"
    assert node_families["mc_inference_requests"] == "counter"
    assert node_samples[("mc_inference_adapter_version", labels(model_id=mid))] == 1
    assert node_samples[("mc_inference_adapter_load_seconds_count", ())] >= 1
    assert node_samples[("mc_inference_caught_up", ())] == 1

    # -- the processor ----------------------------------------------------------------------------
    assert processor_families["mc_processor_joined"] == "counter"
    assert processor_families["mc_processor_dead_letters"] == "counter"
    assert processor[("mc_processor_records_total", ())] >= 4
    assert processor[("mc_processor_joined_total", ())] == 2
    assert processor[("mc_processor_reward_count", labels(model_id=mid, adapter_version="0"))] == 2
    assert processor[("mc_processor_reward_mean", labels(model_id=mid, adapter_version="0"))] == 0.5
    assert _by_name(processor, "mc_processor_watermark_timestamp_seconds"), "per-partition event time"

    # -- the trainer ------------------------------------------------------------------------------
    assert trainer_families["mc_trainer_train_seconds"] == "histogram"
    assert trainer_families["mc_trainer_versions_refused"] == "counter"
    assert trainer[("mc_trainer_versions_published_total", labels(model_id=mid))] == 1
    assert trainer[("mc_trainer_examples_trained_total", labels(model_id=mid))] == 2
    assert trainer[("mc_trainer_windows_total", ())] == 1
    assert trainer[("mc_trainer_examples_total", ())] == 2
    assert trainer[("mc_trainer_train_seconds_count", labels(model_id=mid))] == 1
    assert trainer[("mc_trainer_tokens_per_second", labels(model_id=mid))] > 0
    assert trainer[("mc_trainer_adapter_version", labels(model_id=mid))] == 1
    assert trainer[("mc_trainer_peak_rss_bytes", ())] > 100 * 2**20

    # -- the dashboard ----------------------------------------------------------------------------
    assert dashboard_families["mc_topic_events"] == "counter"
    assert dashboard_families["mc_consumer_lag_messages"] == "gauge"
    assert dash[("mc_topic_events_total", labels(topic=topic_name(TopicKey.PREDICTIONS, settings)))] == 2
    assert dash[("mc_inference_live_version", labels(node=f"{mid}-node", model_id=mid))] == 1
    assert dash[("mc_reward_mean", labels(model_id=mid, adapter_version="0"))] == 0.5
    assert _by_name(dash, "mc_consumer_lag_messages"), "the processor's group shows its lag"


def _clean(kafka: StackSettings, s3: StackSettings, settings: Any, app_id: str, model_id: str) -> None:
    from confluent_kafka.admin import AdminClient

    names = [f"{app_id}-{t}-changelog" for t in ("join", "reward-metrics")] + [f"{app_id}-__assignor-__leader"]
    for fut in (
        AdminClient({"bootstrap.servers": kafka.kafka_bootstrap}).delete_topics(names, operation_timeout=30).values()
    ):
        fut.exception()
    client = s3_client(settings)
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.s3_bucket, Prefix=f"adapters/{model_id}/"
    ):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=settings.s3_bucket, Key=obj["Key"])
