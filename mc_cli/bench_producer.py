"""``mc bench producer``: EventPublisher against a bare confluent-kafka Producer, same run.

Both sides get the same pydantic events and the same librdkafka configuration (idempotence,
acks=all, murmur2_random, linger, compression), and both serialise each event in the timed loop,
as any app has to; the ratio is therefore the cost of what EventPublisher adds: contract encoding
with a size check, a delivery future per event, the delivery callback and the poll thread. Each
side runs twice, alternating, and its better run counts, so a warm-up or a log-segment roll does
not decide the ratio.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tqdm import tqdm

from producers.admin import ensure_topics
from producers.publisher import EventPublisher, producer_config
from producers.settings import ProducerSettings
from schemas.events import RewardEvent
from schemas.kafka_config import kafka_config
from schemas.topics import TopicKey, topic_name

__all__ = ["make_events", "run"]


def make_events(n: int, event_bytes: int) -> list[RewardEvent]:
    probe = RewardEvent(prediction_id="p" * 32, model_id="bench-model", reward=0.5, comment="")
    pad = max(0, event_bytes - len(probe.model_dump_json()))
    return [
        RewardEvent(
            prediction_id=uuid.uuid4().hex,
            model_id="bench-model",
            reward=(i % 100) / 100,
            source="bench",
            comment="x" * pad,
        )
        for i in range(n)
    ]


def _raw(settings: ProducerSettings, topic: str, events: list[RewardEvent], bar: Any) -> float:
    from confluent_kafka import Producer

    producer = Producer(producer_config(settings))
    start = time.perf_counter()
    for i, ev in enumerate(events):
        value = ev.model_dump_json().encode()
        while True:
            try:
                producer.produce(topic, value, ev.prediction_id.encode())
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 999:
            producer.poll(0)
            bar.update(1000)
    if producer.flush(120) != 0:
        raise RuntimeError("raw producer did not deliver everything")
    elapsed = time.perf_counter() - start
    bar.update(len(events) % 1000)
    return len(events) / elapsed


def _publisher(settings: ProducerSettings, events: list[RewardEvent], bar: Any) -> float:
    start = time.perf_counter()
    with EventPublisher(settings) as pub:
        for i, ev in enumerate(events):
            pub.publish_reward(ev)
            if i % 1000 == 999:
                bar.update(1000)
    elapsed = time.perf_counter() - start  # close() flushed: every event acknowledged
    bar.update(len(events) % 1000)
    return len(events) / elapsed


def run(*, events: int = 50_000, event_bytes: int = 1024, rounds: int = 2) -> dict[str, float | int]:
    from confluent_kafka.admin import AdminClient

    base = ProducerSettings()
    settings = base.model_copy(update={"topic_prefix": f"{base.topic_prefix}bench-{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    topic = topic_name(TopicKey.REWARDS, settings)
    data = make_events(events, event_bytes)
    raw_eps, pub_eps = [], []
    try:
        with tqdm(total=2 * rounds * events, unit="ev", desc="bench producer", mininterval=0.5) as bar:
            for _ in range(rounds):
                raw_eps.append(_raw(settings, topic, data, bar))
                pub_eps.append(_publisher(settings, data, bar))
    finally:
        admin = AdminClient(kafka_config(settings))
        names = [topic_name(k, settings) for k in TopicKey]
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.exception()
    raw, pub = max(raw_eps), max(pub_eps)
    return {
        "events": events,
        "event_bytes": len(data[0].model_dump_json()),
        "publisher_eps": round(pub, 1),
        "raw_eps": round(raw, 1),
        "ratio": round(pub / raw, 3),
    }
