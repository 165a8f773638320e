"""A producer that is not Python: Kafka's own console producer (Java, from the jars the stack runs on)
publishes a RewardEvent written by hand against the shipped JSON Schema, and the real processor joins
it with a prediction the Python SDK published. This is the README's "Publishing from any language"."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in the dev extra

from devstack import StackSettings
from devstack.kafka import KafkaNode
from producers import EventPublisher
from schemas import Message, PredictionEvent, TopicKey, TrainingExample, decode, topic_name
from schemas.json_schema import SCHEMA_DIR
from stream_processors.chaos import WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text()))


def console_produce(bootstrap: str, topic: str, lines: list[str]) -> subprocess.CompletedProcess[str]:
    """``kafka-console-producer`` as the README runs it: one ``key<TAB>value`` record per line."""
    libs = KafkaNode(StackSettings()).libs_dir
    command = [
        "java",
        "-Xmx256m",
        "-cp",
        f"{libs}/*",
        "org.apache.kafka.tools.ConsoleProducer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--property",
        "parse.key=true",  # key and value separated by a tab (key.separator)
        "--producer-property",
        "acks=all",
    ]
    stdin = "".join(f"{line}\n" for line in lines)
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120, check=False)


def test_a_reward_from_kafkas_console_producer_is_joined_by_the_processor(topics, kafka, tmp_path: Path) -> None:
    settings = topics()
    prediction = PredictionEvent(
        model_id="m1",
        base_model="smollm2",
        messages=[Message(role="user", content="2+3?"), Message(role="assistant", content="5")],
    )
    with EventPublisher(settings) as pub:
        pub.publish_prediction(prediction).result(30)

    # What a producer in any language writes: JSON that the shipped schema accepts, keyed by prediction_id.
    reward = {
        "schema_version": 1,
        "reward_id": f"console-{uuid.uuid4().hex}",
        "prediction_id": prediction.prediction_id,
        "model_id": "m1",
        "reward": 0.75,
        "created_at": datetime.now(UTC).isoformat(),
        "source": "kafka-console-producer",
    }
    assert list(_schema("RewardEvent").iter_errors(reward)) == []
    line = f"{prediction.prediction_id}\t{json.dumps(reward)}"
    done = console_produce(settings.kafka_bootstrap, topic_name(TopicKey.REWARDS, settings), [line])
    assert done.returncode == 0, done.stderr[-2000:]

    app_id = f"anylang-{uuid.uuid4().hex[:8]}"
    w = WorkerProcess(settings, app_id, tmp_path, "a")
    try:
        w.wait(lambda st: st.counters.get("joined", 0) >= 1, timeout_s=120)
        raw = _read_one(settings.kafka_bootstrap, topic_name(TopicKey.TRAINING_EXAMPLES, settings))
    finally:
        w.stop()
        _delete_processor_topics(settings.kafka_bootstrap, app_id)
    # The processor writes the example as text around the two events' bytes (schemas/examples.py):
    # the bytes themselves are checked against the shipped schema, then decoded.
    assert list(_schema("TrainingExample").iter_errors(json.loads(raw))) == []
    example = decode(raw, TrainingExample)
    assert example.example_id == reward["reward_id"] and example.reward.reward == 0.75
    assert example.reward.source == "kafka-console-producer" and example.prediction == prediction


def _read_one(bootstrap: str, topic: str, timeout_s: float = 30) -> bytes:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"ex-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            value = None if msg is None or msg.error() else msg.value()
            if value:
                return bytes(value)
    finally:
        consumer.close()
    raise TimeoutError(f"no record on {topic}")


def _delete_processor_topics(bootstrap: str, app_id: str) -> None:
    from confluent_kafka.admin import AdminClient

    names = [f"{app_id}-{t}-changelog" for t in ("join", "reward-metrics")] + [f"{app_id}-__assignor-__leader"]
    for fut in AdminClient({"bootstrap.servers": bootstrap}).delete_topics(names, operation_timeout=30).values():
        fut.exception()
