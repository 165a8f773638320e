"""The worker against the real broker: dead letters, expiry of recovered state on an idle partition,
the metrics endpoint. (Crashes, rebalances and a broker restart: ``tests/test_processor_chaos.py``.)

Each worker is a separate OS process (``python -m stream_processors``) configured by MC_* variables.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from producers import EventConsumer, EventPublisher, ProducerSettings
from schemas import Message, PredictionEvent, RewardEvent, TopicKey, TrainingExample, topic_name
from schemas.dead_letter import DeadLetter
from schemas.events import utcnow
from stream_processors.chaos import WorkerProcess, assigned

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def workers(tmp_path: Path, kafka: Any) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []
    app_ids: list[tuple[str, str]] = []

    def start(settings: ProducerSettings, app_id: str, slot: str = "a", **env: str) -> WorkerProcess:
        w = WorkerProcess(settings, app_id, tmp_path, slot, **env)
        started.append(w)
        app_ids.append((app_id, kafka.kafka_bootstrap))
        return w

    yield start
    for w in started:
        w.stop()
    from confluent_kafka.admin import AdminClient

    for app_id, bootstrap in set(app_ids):
        names = [f"{app_id}-{t}-changelog" for t in ("join", "reward-metrics")] + [f"{app_id}-__assignor-__leader"]
        for fut in AdminClient({"bootstrap.servers": bootstrap}).delete_topics(names, operation_timeout=30).values():
            fut.exception()


def test_dead_letters_expiry_after_restart_on_an_idle_partition_and_metrics(
    topics: Callable[..., ProducerSettings], workers: Callable[..., WorkerProcess]
) -> None:
    settings = topics()
    app_id = f"exp-{uuid.uuid4().hex[:8]}"
    env = {"MC_PROCESSOR_JOIN_TTL": "30", "MC_PROCESSOR_IDLE_AFTER": "2"}
    w = workers(settings, app_id, **env)
    w.wait(assigned)
    orphan = RewardEvent(prediction_id=uuid.uuid4().hex, model_id="m", reward=0.5)  # its prediction never comes
    pred = PredictionEvent(
        model_id="m", base_model="b", adapter_version=4, messages=[Message(role="user", content="q")]
    )
    reward = RewardEvent(prediction_id=pred.prediction_id, model_id="m", reward=0.25)
    with EventPublisher(settings) as pub:
        orphan_at = pub.publish_reward(orphan).result(30)
        pub.publish_raw(topic_name(TopicKey.REWARDS, settings), b"k", b"\x00garbage")
        pub.publish_prediction(pred)
        pub.publish_reward(reward)
        pub.publish_reward(reward)  # delivered twice: one example all the same
    st = w.wait(lambda st: st.counters.get("records", 0) >= 5 and st.counters.get("joined", 0) >= 1)
    assert st.counters["dead_letters.malformed"] == 1 and st.counters["duplicate_rewards"] == 1
    time.sleep(2.5)  # a commit and the metrics flush
    with EventConsumer(
        TopicKey.TRAINING_EXAMPLES, TrainingExample, group_id=f"ex-{uuid.uuid4().hex}", settings=settings
    ) as consumer:
        examples = [c.event for c in consumer.events(idle_timeout_s=3)]
    assert [e.example_id for e in examples] == [reward.reward_id]
    assert examples[0] == TrainingExample.join(pred, reward).model_copy(update={"created_at": reward.created_at})
    rows = w.client.rewards()
    assert [(r.model_id, r.adapter_version, r.count, r.mean) for r in rows] == [("m", 4, 1, 0.25)]
    w.kill()

    w2 = workers(settings, app_id, **env)
    w2.wait(lambda st: st.assigned is not None and st.states_indexed >= 1)
    # Event time moves on another partition only; the orphan's partition stays idle.
    with EventPublisher(settings) as pub:
        while True:
            late = PredictionEvent(
                model_id="m",
                base_model="b",
                created_at=utcnow() + timedelta(seconds=60),
                messages=[Message(role="user", content="late")],
            )
            if pub.publish_prediction(late).result(30).partition != orphan_at.partition:
                break
    w2.wait(lambda st: st.counters.get("expired_unmatched_rewards", 0) >= 1, timeout_s=60)
    letters: dict[str, DeadLetter] = {}
    from confluent_kafka import Consumer

    dl_consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"dl-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    dl_consumer.subscribe([topic_name(TopicKey.DEAD_LETTERS, settings)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(letters) < 2:
            msg = dl_consumer.poll(1.0)
            if msg is not None and not msg.error():
                letter = DeadLetter.model_validate_json(msg.value() or b"{}")
                letters[letter.reason] = letter
    finally:
        dl_consumer.close()
    assert letters["malformed"].value == b"\x00garbage" and letters["malformed"].key == b"k"
    expired = letters["expired_unmatched"]
    assert RewardEvent.model_validate_json(expired.value or b"{}") == orphan
    assert (expired.source_partition, expired.source_offset) == (orphan_at.partition, orphan_at.offset)
