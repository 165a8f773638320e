"""A worker's first start on a fresh broker (issue #9): nothing exists yet for its topic prefix and app id.

The worker must create every topic it needs (the contract's, its tables' changelogs, faust's leader
topic) and see them in the metadata before its agents run: no crash loop, no "missing topic", and the
first reward is joined at once. Before the fix a fresh start could crash the join agent every 5 s for
~40 s with ``PartitionsMismatch`` (a changelog with 0 partitions in the metadata) and join the first
reward after 55.8 s.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers import EventConsumer, EventPublisher, ProducerSettings
from schemas import Message, PredictionEvent, RewardEvent, TopicKey, TrainingExample, topic_name
from schemas.process import Part, start_part

#: what a crash loop or a topic created too late leaves in the worker's log
BAD_LOG_LINES = ("Traceback", "PartitionsMismatch", "missing topic", "Crashed", "[ERROR]")


@pytest.fixture
def fresh(kafka: Any) -> Iterator[tuple[ProducerSettings, str]]:
    """A topic prefix and app id no topic exists for; everything they got is deleted afterwards."""
    from confluent_kafka.admin import AdminClient

    settings = ProducerSettings(topic_prefix=f"fresh-{uuid.uuid4().hex[:10]}.", kafka_bootstrap=kafka.kafka_bootstrap)
    app_id = f"fresh-{uuid.uuid4().hex[:8]}"
    yield settings, app_id
    names = [topic_name(key, settings) for key in TopicKey]
    names += [f"{app_id}-{t}-changelog" for t in ("join", "reward-metrics")] + [f"{app_id}-__assignor-__leader"]
    admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap})  # kept alive until the deletes are done
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        fut.exception()


def _assert_changelogs_shaped(settings: ProducerSettings, app_id: str) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._config import ConfigResource

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    for table in ("join", "reward-metrics"):
        name = f"{app_id}-{table}-changelog"
        assert len(topics[name].partitions) == settings.partitions
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        config = admin.describe_configs([resource])[resource].result(10)
        assert config["cleanup.policy"].value == "compact"


def _stats(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/processor/", timeout=2) as resp:
            data: dict[str, Any] = json.load(resp)
            return data
    except OSError:
        return {}


def test_worker_topics_are_faust_own_names_counts_and_configs(tmp_path: Path) -> None:
    """No broker: the list comes from the app's own topic objects, configured as faust's transport would."""
    from stream_processors.app import create_app
    from stream_processors.settings import ProcessorSettings
    from stream_processors.topics import worker_topics

    s = ProcessorSettings(topic_prefix="p.", processor_app_id="app", processor_data_dir=tmp_path)
    app = create_app(s, partitions=4).app
    got = {t.name: (t.partitions, t.config, t.internal) for t in worker_topics(app, s, 4)}
    compact = {"cleanup.policy": "compact"}
    assert got == {
        "p.predictions": (4, {}, False),
        "p.rewards": (4, {}, False),
        "p.training-examples": (0, {}, False),
        "p.dead-letters": (0, {}, False),
        "app-join-changelog": (4, compact, True),
        "app-reward-metrics-changelog": (4, compact, True),
        "app-__assignor-__leader": (1, {}, True),
    }
    for table in app.tables.values():  # what faust itself would have created
        topic = table.changelog_topic
        assert topic.get_topic_name() in got
        assert app.transport._topic_config(topic.retention, topic.compacting, topic.deleting) == compact


@pytest.mark.kafka
def test_first_start_on_a_fresh_broker_joins_the_first_reward_at_once(
    fresh: tuple[ProducerSettings, str], tmp_path: Path
) -> None:
    settings, app_id = fresh
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "worker.log"
    env = {
        "MC_TOPIC_PREFIX": settings.topic_prefix,
        "MC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "MC_PROCESSOR_APP_ID": app_id,
        "MC_PROCESSOR_DATA_DIR": str(tmp_path / "state"),
        "MC_PROCESSOR_WEB_PORT": str(port),
        "MC_PROCESSOR_LOG_LEVEL": "info",
    }
    proc = start_part(Part.PROCESSOR, env=env, log=log, cwd=Path(__file__).resolve().parents[1])
    try:
        # "assigned" is set once the tables are recovered and partitions owned
        ready_s = proc.wait_ready(lambda: _stats(port).get("assigned") is not None, 40)

        pred = PredictionEvent(model_id="m", base_model="b", messages=[Message(role="user", content="q")])
        reward = RewardEvent(prediction_id=pred.prediction_id, model_id="m", reward=1.0)
        with EventPublisher(settings) as pub:
            pub.publish_prediction(pred).result(10)
            sent_ms = time.time() * 1000
            pub.publish_reward(reward).result(10)
        example: TrainingExample | None = None
        with EventConsumer(
            TopicKey.TRAINING_EXAMPLES, TrainingExample, group_id=f"check-{uuid.uuid4().hex}", settings=settings
        ) as consumer:
            deadline = time.monotonic() + 20
            while example is None and time.monotonic() < deadline:
                item = consumer.poll(0.5)
                if item is not None:
                    example, example_ms = item.event, item.record.timestamp_ms
        assert example is not None, f"no example in 20 s; stats {_stats(port)}; log: {proc.log_tail()}"
        assert example.example_id == reward.reward_id and example_ms is not None
        # the example's record timestamp is when the worker produced it (faust leaves it to the producer):
        # the join's latency, without this reader's group join
        join_s = (example_ms - sent_ms) / 1000
        _assert_changelogs_shaped(settings, app_id)
        print(f"worker ready after {ready_s:.1f} s; first reward joined in {join_s:.2f} s")
        assert join_s <= 5.0, f"first reward joined after {join_s:.1f} s; log: {proc.log_tail()}"
        time.sleep(1.5)  # an expiry pass and a commit after the join: a late crash shows up in the log too
        assert proc.running(), f"worker died: {proc.log_tail()}"
    finally:
        proc.stop(30)
    text = log.read_text()
    bad = [line for line in text.splitlines() if any(b in line for b in BAD_LOG_LINES)]
    assert not bad, f"the worker's log has crash lines: {bad[:5]}; log: {text[-3000:]}"
