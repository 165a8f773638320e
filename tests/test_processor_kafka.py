"""The worker against the real broker: crash tests (SIGKILL mid-stream, one and two workers), dead
letters, expiry of recovered state on an idle partition, the metrics endpoint.

Each worker is a separate OS process (``python -m stream_processors``) configured by MC_* variables.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class Worker:
    def __init__(self, settings: ProducerSettings, app_id: str, data_dir: Path, slot: str, **env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = data_dir / f"worker-{self.port}.log"
        full_env = {
            **os.environ,
            "MC_TOPIC_PREFIX": settings.topic_prefix,
            "MC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "MC_PROCESSOR_APP_ID": app_id,
            "MC_PROCESSOR_DATA_DIR": str(data_dir / f"state-{slot}"),  # a restart finds its store again
            "MC_PROCESSOR_WEB_PORT": str(self.port),
            "MC_PROCESSOR_SESSION_TIMEOUT_S": "6",
            "MC_PROCESSOR_LOG_LEVEL": "info",
            **env,
        }
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_processors"],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[1],
            )

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            data: dict[str, Any] = json.load(resp)
            return data

    def stats(self) -> dict[str, Any]:
        try:
            return self.get("/processor/")
        except OSError:
            return {}

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker died: {self.log.read_text()[-3000:]}"
            st = self.stats()
            if st and pred(st):
                return st
            time.sleep(0.3)
        raise AssertionError(f"timed out; last stats {self.stats()}; log: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def workers(tmp_path: Path, kafka: Any) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []
    app_ids: list[tuple[str, str]] = []

    def start(settings: ProducerSettings, app_id: str, slot: str = "a", **env: str) -> Worker:
        w = Worker(settings, app_id, tmp_path, slot, **env)
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


def _assigned(st: dict[str, Any]) -> bool:
    return st.get("assigned") is not None


def _events(n: int, seed: int) -> tuple[list[PredictionEvent | RewardEvent], set[str]]:
    rnd = random.Random(seed)
    preds = [
        PredictionEvent(model_id=f"m{i % 3}", base_model="b", messages=[Message(role="user", content=f"q{i}")])
        for i in range(n)
    ]
    rewards = [RewardEvent(prediction_id=p.prediction_id, model_id=p.model_id, reward=rnd.random()) for p in preds]
    stream: list[PredictionEvent | RewardEvent] = [*preds, *rewards, *rnd.sample(rewards, 50)]  # 50 re-deliveries
    rnd.shuffle(stream)  # about half the rewards come before their prediction
    return stream, {r.reward_id for r in rewards}


def _publish(settings: ProducerSettings, events: list[PredictionEvent | RewardEvent]) -> None:
    with EventPublisher(settings) as pub:
        for ev in events:
            pub.publish(TopicKey.PREDICTIONS if isinstance(ev, PredictionEvent) else TopicKey.REWARDS, ev)


def _example_ids(settings: ProducerSettings, want: set[str], timeout_s: float = 150) -> list[str]:
    ids: list[str] = []
    deadline = time.monotonic() + timeout_s
    with EventConsumer(
        TopicKey.TRAINING_EXAMPLES, TrainingExample, group_id=f"check-{uuid.uuid4().hex}", settings=settings
    ) as consumer:
        while time.monotonic() < deadline and not want <= set(ids):
            item = consumer.poll(1.0)
            if item is not None:
                assert item.record.key == item.event.model_id.encode()
                ids.append(item.event.example_id)
    return ids


def test_sigkill_mid_stream_loses_no_example(
    topics: Callable[..., ProducerSettings], workers: Callable[..., Worker]
) -> None:
    settings = topics()
    stream, reward_ids = _events(5000, seed=1)
    app_id = f"crash-{uuid.uuid4().hex[:8]}"
    w = workers(settings, app_id)
    w.wait(_assigned)
    _publish(settings, stream[: len(stream) // 2])
    w.wait(lambda st: st["counters"].get("joined", 0) >= 800)
    w.kill()  # mid-stream: state written, examples and offsets partly not
    _publish(settings, stream[len(stream) // 2 :])
    w2 = workers(settings, app_id)
    ids = _example_ids(settings, reward_ids)
    assert set(ids) == reward_ids, f"missing {len(reward_ids - set(ids))}; stats {w2.stats()}"


@pytest.mark.xfail(
    reason="known bug: when one of two workers is SIGKILLed, the worker taking over its partitions can miss "
    "join state, so a few rewards never meet their prediction (1 of 5,000 in 2 of 3 runs after sending the "
    "changelog through the commit-attached topic; 460 before). Single-worker restarts lose nothing.",
    strict=False,
)
def test_two_workers_one_killed_loses_no_example(
    topics: Callable[..., ProducerSettings], workers: Callable[..., Worker]
) -> None:
    settings = topics()
    stream, reward_ids = _events(5000, seed=2)
    app_id = f"pair-{uuid.uuid4().hex[:8]}"
    a = workers(settings, app_id)
    a.wait(_assigned)
    b = workers(settings, app_id, slot="b")
    b.wait(lambda st: bool(st.get("assigned")))
    a.wait(lambda st: st.get("assigned") is not None and len(st["assigned"]) < 6)
    _publish(settings, stream[: len(stream) // 2])
    a.wait(lambda st: st["counters"].get("joined", 0) >= 300)
    a.kill()
    _publish(settings, stream[len(stream) // 2 :])
    ids = _example_ids(settings, reward_ids)
    assert set(ids) == reward_ids, f"missing {len(reward_ids - set(ids))}; stats {b.stats()}"
    assert b.stats()["assigned"] == list(range(settings.partitions))  # b took over a's partitions


def test_dead_letters_expiry_after_restart_on_an_idle_partition_and_metrics(
    topics: Callable[..., ProducerSettings], workers: Callable[..., Worker]
) -> None:
    settings = topics()
    app_id = f"exp-{uuid.uuid4().hex[:8]}"
    env = {"MC_JOIN_TTL": "30", "MC_PROCESSOR_IDLE_AFTER": "2"}
    w = workers(settings, app_id, **env)
    w.wait(_assigned)
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
    st = w.wait(lambda st: st["counters"].get("records", 0) >= 5 and st["counters"].get("joined", 0) >= 1)
    assert st["counters"]["dead_letters.malformed"] == 1 and st["counters"]["duplicate_rewards"] == 1
    time.sleep(2.5)  # a commit and the metrics flush
    with EventConsumer(
        TopicKey.TRAINING_EXAMPLES, TrainingExample, group_id=f"ex-{uuid.uuid4().hex}", settings=settings
    ) as consumer:
        examples = [c.event for c in consumer.events(idle_timeout_s=3)]
    assert [e.example_id for e in examples] == [reward.reward_id]
    assert examples[0] == TrainingExample.join(pred, reward).model_copy(update={"created_at": reward.created_at})
    rows = w.get("/rewards/")["models"]
    assert [(r["model_id"], r["adapter_version"], r["count"], r["mean"]) for r in rows] == [("m", 4, 1, 0.25)]
    w.kill()

    w2 = workers(settings, app_id, **env)
    w2.wait(lambda st: st.get("assigned") is not None and st["states_indexed"] >= 1)
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
    w2.wait(lambda st: st["counters"].get("expired_unmatched_rewards", 0) >= 1, timeout_s=60)
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
