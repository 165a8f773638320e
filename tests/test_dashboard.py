"""The ops dashboard in headless Chromium against the real broker under load.

The lag the page shows must equal what Kafka's admin API reports. The checked group is stopped (it
consumed part of its topic, committed, and left), so its lag is fixed while a publisher keeps loading
the broker on another topic; the figures are taken independently of the dashboard's own code path
(committed offsets from the admin API, end offsets from the consumer's watermarks).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from html.parser import HTMLParser
from typing import Any

import pytest
from prometheus_client import generate_latest

from dashboard import Collector, DashboardServer, DashboardSettings
from dashboard.prometheus import dashboard_registry
from producers import EventPublisher
from schemas import Message, PredictionEvent, RewardEvent, TopicKey, TrainingExample, topic_name
from tests.metrics_text import labels, samples

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class _Tables(HTMLParser):
    """Rows of every <table id=...> in the rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _render(url: str) -> str:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by scripts/ensure-chromium.sh (make test)"
    out = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--virtual-time-budget=4000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _admin_lag(settings: Any, group: str) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
    watermarks = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"{group}-probe"})
    try:
        lag = {}
        for tp in res.topic_partitions:
            if tp.offset < 0:
                continue
            _low, high = watermarks.get_watermark_offsets(tp, timeout=30)
            lag[(tp.topic, tp.partition)] = high - tp.offset
        return lag
    finally:
        watermarks.close()


def test_page_shows_the_lag_kafka_reports(topics) -> None:
    settings = topics(partitions=3)
    prefix = f"dash-{uuid.uuid4().hex[:8]}"
    group = f"{prefix}-stopped"
    with EventPublisher(settings) as pub:
        for i in range(600):
            pub.publish_reward(RewardEvent(prediction_id=uuid.uuid4().hex, model_id="m", reward=i % 2))
    # the group consumed part of each partition, committed, and stopped
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    topic = topic_name(TopicKey.REWARDS, settings)
    consumer.commit(offsets=[TopicPartition(topic, p, 20 + 10 * p) for p in range(3)], asynchronous=False)
    consumer.close()
    expected = _admin_lag(settings, group)
    assert sum(expected.values()) == 600 - (20 + 30 + 40) and len(expected) == 3

    stop = threading.Event()

    def load() -> None:  # keeps the broker busy on another topic while the page is read
        with EventPublisher(settings) as pub:
            while not stop.is_set():
                for _ in range(50):
                    pub.publish_prediction(
                        PredictionEvent(
                            model_id="m", base_model="b", messages=[Message(role="user", content="x" * 200)]
                        )
                    )
                time.sleep(0.05)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    dash_settings = DashboardSettings(topic_prefix=settings.topic_prefix, dashboard_sample_s=0.5)
    server = DashboardServer(Collector(dash_settings, group_prefix=prefix), "127.0.0.1", 0, refresh_ms=500)
    server.start()
    try:
        time.sleep(2.0)  # a few samples: events/s needs two
        dom = _render(server.url + "/")
        metrics = samples(_http_get(server.url + "/metrics"))
    finally:
        stop.set()
        loader.join(30)
        server.stop()

    assert 'data-loaded="1"' in dom, "the page's script ran and filled the tables"
    parser = _Tables()
    parser.feed(dom)
    rows = [r for r in parser.tables["lag"] if r[0] == group]
    shown = {(r[1], int(r[2])): int(r[5]) for r in rows}
    assert shown == expected
    # seconds of lag: the oldest unconsumed record is a few seconds old, never negative
    assert all(0 < float(r[6]) < 300 for r in rows if int(r[5]) > 0)
    # the load is visible as a write rate on the predictions topic
    rates = {r[0]: r[1] for r in parser.tables["rates"]}
    assert float(rates[topic_name(TopicKey.PREDICTIONS, settings)]) > 0
    # /metrics carries the same lag
    for (topic, partition), lag in expected.items():
        labels_ = {"group": group, "topic": topic, "partition": str(partition)}
        assert metrics[("mc_consumer_lag_messages", labels(**labels_))] == lag


def test_prometheus_text_is_well_formed() -> None:
    """Labels with quotes, backslashes and newlines survive the exposition (prometheus_client's parser)."""
    odd = 'g"1\\x\nnext'
    snap = {
        "lag": [{"group": odd, "topic": "t", "partition": 0, "lag_messages": 5, "lag_seconds": 1.5}],
        "events_total": {"t": 10},
        "events_per_s": {"t": 2.0},
        "dead_letters_by_reason": {"invalid": 3},
        "rewards": [{"model_id": "m", "adapter_version": 2, "count": 4, "mean": 0.5}],
        "inference_nodes": [{"node_id": "n1", "live": {"m": 2}, "refused": {"updates_refused_unsigned": 1}}],
    }
    got = samples(generate_latest(dashboard_registry(lambda: snap)).decode())
    assert got[("mc_inference_refused_total", labels(node="n1", reason="updates_refused_unsigned"))] == 1
    assert got[("mc_consumer_lag_messages", labels(group=odd, topic="t", partition="0"))] == 5
    assert got[("mc_reward_mean", labels(model_id="m", adapter_version="2"))] == 0.5
    assert got[("mc_reward_count", labels(model_id="m", adapter_version="2"))] == 4
    assert got[("mc_inference_live_version", labels(node="n1", model_id="m"))] == 2
    assert got[("mc_dead_letters_total", labels(reason="invalid"))] == 3
    assert got[("mc_topic_events_total", labels(topic="t"))] == 10
    # an empty snapshot (nothing sampled yet) still parses
    assert samples(generate_latest(dashboard_registry(dict)).decode()) == {}


def _http_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()  # type: ignore[no-any-return]


def test_processor_figures_are_read_in_the_processors_own_shape() -> None:
    """Rows and counters as a real Processor produces them (stream_processors/worker.py), through the
    bodies its web pages serve and its client parses (stream_processors/api.py)."""
    import asyncio

    from dashboard.collector import _live, _merge_rewards
    from stream_processors.api import ProcessorStats, RewardsBody
    from stream_processors.settings import ProcessorSettings
    from stream_processors.worker import Processor

    class Sink:  # the join state lives in a dict here; what matters is what the worker reports
        def __init__(self) -> None:
            self.state: dict[bytes, bytes] = {}

        async def example(self, key: bytes, value: bytes) -> None: ...
        async def dead_letter(self, key: bytes | None, value: bytes) -> None: ...

        async def put_state(self, partition: int, key: bytes, value: bytes) -> None:
            self.state[key] = value

        async def delete_state(self, partition: int, key: bytes) -> None:
            self.state.pop(key, None)

    class Metrics(dict[str, bytes]):
        def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
            return super().get(key, default)

    def worker() -> Processor:
        sink = Sink()
        return Processor(
            ProcessorSettings(),
            predictions_topic="p",
            rewards_topic="r",
            state=sink.state,
            metrics=Metrics(),
            sink=sink,
        )

    async def feed(proc: Processor, partition: int, reward: float) -> None:
        pred = PredictionEvent(
            model_id="m", base_model="b", adapter_version=2, messages=[Message(role="user", content="q")]
        )
        rew = RewardEvent(prediction_id=pred.prediction_id, model_id="m", reward=reward)
        key = pred.prediction_id.encode()
        await proc.handle("p", partition, 0, None, key, pred.model_dump_json().encode())
        await proc.handle("r", partition, 1, None, key, rew.model_dump_json().encode())
        await proc.handle("r", partition, 2, None, key, b"{not json")

    a, b = worker(), worker()
    asyncio.run(feed(a, 0, 1.0))
    asyncio.run(feed(b, 1, 0.0))
    # what web.py serves, as JSON, read back as ProcessorClient reads it
    served = [
        (
            RewardsBody(models=p.reward_metrics()).model_dump_json().encode(),
            p.stats().model_dump_json().encode(),
        )
        for p in (a, b)
    ]
    rewards = [RewardsBody.model_validate_json(body).models for body, _ in served]
    stats = [ProcessorStats.model_validate_json(body) for _, body in served]
    [row] = _merge_rewards(rewards)
    assert (row["model_id"], row["adapter_version"], row["count"], row["mean"]) == ("m", 2, 2, 0.5)
    assert row["last_update"] is not None
    live = [_live(f"w{i}", st) for i, st in enumerate(stats)]
    assert [(w["records"], w["joined"], w["dead_letters"], w["dead_letters_by_reason"]) for w in live] == [
        (3, 1, 1, {"malformed": 1})
    ] * 2
    assert stats[0].watermarks[0].event_ms is not None and stats[1].watermarks.keys() == {1}


def test_dead_letters_by_reason_and_joined_come_from_the_topics(topics) -> None:
    """Counts that a worker's restart cannot reset: a dashboard started afresh shows the same numbers."""
    from dashboard.dead_letters import UNREADABLE, DeadLetterCounts
    from schemas.dead_letter import DeadLetter

    settings = topics(partitions=3)
    dead_topic = topic_name(TopicKey.DEAD_LETTERS, settings)
    reasons = ["malformed"] * 3 + ["invalid"] * 2 + ["expired_unmatched"]
    with EventPublisher(settings) as pub:
        for i, reason in enumerate(reasons):
            letter = DeadLetter(reason=reason, source_topic="t", source_partition=0, source_offset=i)
            pub.publish_raw(dead_topic, b"k", letter.model_dump_json().encode())
        pub.publish_raw(dead_topic, None, b"not a dead letter")
        for i in range(7):
            pred = PredictionEvent(model_id="m", base_model="b", messages=[Message(role="user", content=str(i))])
            reward = RewardEvent(prediction_id=pred.prediction_id, model_id="m", reward=1.0)
            pub.publish(TopicKey.TRAINING_EXAMPLES, TrainingExample.join(pred, reward))
        pub.flush()
    expected = {"expired_unmatched": 1, "invalid": 2, "malformed": 3, UNREADABLE: 1}

    dash = DashboardSettings(topic_prefix=settings.topic_prefix)
    prefix = f"dash-{uuid.uuid4().hex[:8]}"
    for _restart in range(2):  # the second Collector is a restarted dashboard: it counts from the topic again
        collector = Collector(dash, group_prefix=prefix)
        try:
            snap = collector.sample()
            assert snap["errors"] == {}
            assert snap["dead_letters_by_reason"] == expected
            assert snap["dead_letters_total"] == sum(expected.values())
            assert snap["joined_total"] == 7
            # incremental: a later sample counts only what was written since
            with EventPublisher(settings) as pub:
                letter = DeadLetter(reason="invalid", source_topic="t", source_partition=0, source_offset=99)
                pub.publish_raw(dead_topic, b"k", letter.model_dump_json().encode()).result(30)
            expected["invalid"] += 1
            assert collector.sample()["dead_letters_by_reason"] == expected
        finally:
            collector.stop()

    # bounded work per sample: a backlog is counted over several samples, never twice
    counts = DeadLetterCounts(settings, dead_topic, max_records=3)
    try:
        seen = [sum(counts.read().values()) for _ in range(5)]
    finally:
        counts.close()
    assert seen == [3, 6, 9, 9, 9] and counts.counts == expected
