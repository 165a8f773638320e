"""The exported JSON Schemas: up to date with the models, true of what the Python publisher writes on
the real broker, and refusing the bad cases the Python consumer refuses (or saying where they cannot)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in the dev extra

from mc_cli.main import main as mc_main
from schemas import (
    AdapterUpdate,
    AssistantTurn,
    Message,
    PredictionEvent,
    RewardEvent,
    SchemaError,
    TopicKey,
    TrainingExample,
    decode,
    topic_name,
)
from schemas.dead_letter import DeadLetter
from schemas.json_schema import SCHEMA_DIR, TOPIC_MODELS, json_schema, schema_files, stale_files

SHA = "a" * 64


def validator(topic: TopicKey) -> Draft202012Validator:
    """The validator a producer in another language would build from the shipped file."""
    name = f"{TOPIC_MODELS[topic].__name__}.schema.json"
    schema = json.loads((SCHEMA_DIR / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _prediction() -> PredictionEvent:
    return PredictionEvent(
        model_id="m1",
        base_model="smollm2",
        adapter_version=2,
        messages=[Message(role="user", content="2+3?"), Message(role="assistant", content="5")],
        turns=[AssistantTurn(message_index=1, completion_token_ids=[20, 21], completion_logprobs=[-0.1, -0.2])],
        final_answer={"answer": 5},
        timings={"total_s": 0.4},
    )


def _wire(event: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event.model_dump_json())
    return data


def test_committed_schemas_are_what_the_models_generate() -> None:
    assert stale_files() == [], "run `mc schemas export --out schemas/json` and commit the files"
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json")) == sorted(schema_files())
    for topic in TOPIC_MODELS:
        Draft202012Validator.check_schema(json_schema(topic))


def test_mc_schemas_export_writes_the_shipped_files(tmp_path: Path) -> None:
    assert mc_main(["schemas", "export", "--out", str(tmp_path / "out")]) == 0
    assert stale_files(tmp_path / "out") == []


def test_the_package_data_ships_the_files() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["schemas"]
    assert all(any(Path("json", name).match(p) for p in patterns) for name in schema_files())


def _read(settings: Any, topic: TopicKey, expected: int, timeout_s: float = 30) -> list[bytes]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"schema-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic_name(topic, settings)])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                values.append(msg.value() or b"")
    finally:
        consumer.close()
    assert len(values) == expected, f"{topic}: read {len(values)} of {expected}"
    return values


@pytest.mark.kafka
def test_what_the_python_publisher_writes_validates(topics) -> None:
    from producers import EventPublisher
    from schemas.signing import sign_update

    settings = topics()
    pred = _prediction()
    reward = RewardEvent(prediction_id=pred.prediction_id, model_id="m1", reward=-0.5, source="app", comment="ok")
    update = AdapterUpdate(
        model_id="m1",
        version=3,
        uri="s3://bucket/adapters/m1/v3/",
        files={"adapter_model.safetensors": SHA},
        base_model="smollm2",
        parent_version=2,
        metrics={"loss": 0.5},
    )
    sent: dict[TopicKey, list[Any]] = {
        TopicKey.PREDICTIONS: [pred, _prediction().model_copy(update={"turns": [], "error": "timeout"})],
        TopicKey.REWARDS: [reward],
        TopicKey.TRAINING_EXAMPLES: [TrainingExample.join(pred, reward)],
        TopicKey.ADAPTER_UPDATES: [
            sign_update(update, settings.signing_key()),
            sign_update(update.model_copy(update={"stage": "candidate", "version": 4}), settings.signing_key()),
        ],
    }
    letter = DeadLetter(
        reason="malformed",
        error="not JSON",
        source_topic="x",
        source_partition=0,
        source_offset=7,
        key_b64=DeadLetter.b64(b"k"),
        value_b64=DeadLetter.b64(b"\x00"),
    )
    with EventPublisher(settings) as pub:
        for topic, events in sent.items():
            for event in events:
                pub.publish(topic, event).result(30)
        pub.publish_raw(topic_name(TopicKey.DEAD_LETTERS, settings), b"k", letter.model_dump_json().encode()).result(30)
    sent[TopicKey.DEAD_LETTERS] = [letter]
    for topic, events in sent.items():
        check = validator(topic)
        for raw in _read(settings, topic, len(events)):
            errors = [e.message for e in check.iter_errors(json.loads(raw))]
            assert errors == [], (topic, errors)


def _mutate(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``path`` (dot-separated, ints index lists) set, or removed when value is ...."""
    out: dict[str, Any] = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return out


def _reward_wire() -> dict[str, Any]:
    return _wire(RewardEvent(prediction_id="p-1", model_id="m1", reward=1.0))


def _update_wire() -> dict[str, Any]:
    return _wire(
        AdapterUpdate(
            model_id="m1", version=1, uri="s3://b/adapters/m1/v1/", files={"a.safetensors": SHA}, base_model="smollm2"
        )
    )


# (topic, a valid record, path, the bad value or ... to remove it): both jsonschema and decode refuse it
REFUSED = [
    (TopicKey.REWARDS, _reward_wire, "prediction_id", ...),
    (TopicKey.REWARDS, _reward_wire, "prediction_id", ""),
    (TopicKey.REWARDS, _reward_wire, "prediction_id", "a b"),
    (TopicKey.REWARDS, _reward_wire, "model_id", ...),
    (TopicKey.REWARDS, _reward_wire, "model_id", "../etc"),
    (TopicKey.REWARDS, _reward_wire, "model_id", "m" * 65),
    (TopicKey.REWARDS, _reward_wire, "schema_version", ...),
    (TopicKey.REWARDS, _reward_wire, "schema_version", 2),
    (TopicKey.REWARDS, _reward_wire, "reward", ...),
    (TopicKey.REWARDS, _reward_wire, "reward", None),
    (TopicKey.REWARDS, _reward_wire, "source", "s" * 257),
    (TopicKey.REWARDS, _reward_wire, "bonus", 1),
    (TopicKey.PREDICTIONS, lambda: _wire(_prediction()), "messages", ...),
    (TopicKey.PREDICTIONS, lambda: _wire(_prediction()), "messages.0.role", "robot"),
    (TopicKey.PREDICTIONS, lambda: _wire(_prediction()), "adapter_version", -1),
    (TopicKey.PREDICTIONS, lambda: _wire(_prediction()), "timings.total_s", -1.0),
    (TopicKey.ADAPTER_UPDATES, _update_wire, "uri", "http://elsewhere/x"),
    (TopicKey.ADAPTER_UPDATES, _update_wire, "files.a.safetensors", "not-a-hash"),
    (TopicKey.ADAPTER_UPDATES, _update_wire, "stage", "production"),
    (TopicKey.ADAPTER_UPDATES, _update_wire, "version", -1),
]


# The schema is stricter than decode here (schemas/json_schema.py): decode would fill a default (a fresh
# random id, the consumer's clock) or coerce a JSON string to a number (pydantic's lax mode).
STRICTER = [
    (TopicKey.REWARDS, _reward_wire, "reward_id", ...),
    (TopicKey.REWARDS, _reward_wire, "created_at", ...),
    (TopicKey.REWARDS, _reward_wire, "reward", "1.0"),
    (TopicKey.PREDICTIONS, lambda: _wire(_prediction()), "prediction_id", ...),
    (TopicKey.PREDICTIONS, lambda: _wire(_prediction()), "turns.0.completion_token_ids.0", "20"),
    (TopicKey.ADAPTER_UPDATES, _update_wire, "update_id", ...),
]


@pytest.mark.parametrize(("topic", "make", "path", "value"), STRICTER)
def test_the_schema_refuses_what_decode_would_default_or_coerce(topic, make, path, value) -> None:
    bad = _mutate(make(), path, value)
    assert list(validator(topic).iter_errors(bad)), f"the schema accepts {path}={value!r}"
    decode(json.dumps(bad).encode(), TOPIC_MODELS[topic])  # type: ignore[type-var]


@pytest.mark.parametrize(("topic", "make", "path", "value"), REFUSED)
def test_bad_records_are_refused_by_the_schema_and_by_decode(topic, make, path, value) -> None:
    if path.startswith("files."):  # a file name holds a dot
        bad = make()
        bad["files"]["a.safetensors"] = value
    else:
        bad = _mutate(make(), path, value)
    assert list(validator(topic).iter_errors(make())) == []
    assert list(validator(topic).iter_errors(bad)), f"the schema accepts {path}={value!r}"
    with pytest.raises(SchemaError):
        decode(json.dumps(bad).encode(), TOPIC_MODELS[topic])  # type: ignore[type-var]


# What JSON Schema cannot express (schemas/json_schema.py says so): the schema accepts, decode refuses.
def _nan_reward() -> bytes:
    return json.dumps(_mutate(_reward_wire(), "reward", 0.0)).replace('"reward": 0.0', '"reward": NaN').encode()


NOT_EXPRESSIBLE = [
    ("a non-finite reward (a NaN token)", TopicKey.REWARDS, _nan_reward),
    (
        "a created_at without a timezone",
        TopicKey.REWARDS,
        lambda: json.dumps(_mutate(_reward_wire(), "created_at", "2026-01-01T00:00:00")).encode(),
    ),
    (
        "logprobs and token ids of different lengths",
        TopicKey.PREDICTIONS,
        lambda: json.dumps(_mutate(_wire(_prediction()), "turns.0.completion_logprobs", [-0.1])).encode(),
    ),
    (
        "an adapter version without a uri",
        TopicKey.ADAPTER_UPDATES,
        lambda: json.dumps(_mutate(_update_wire(), "uri", None)).encode(),
    ),
]


@pytest.mark.parametrize(("case", "topic", "make"), NOT_EXPRESSIBLE)
def test_checks_json_schema_cannot_express_are_left_to_decode(case, topic, make) -> None:
    raw = make()
    parsed = json.loads(raw)  # Python reads a NaN token as a float, which "type": "number" takes
    schema = json.loads((SCHEMA_DIR / f"{TOPIC_MODELS[topic].__name__}.schema.json").read_text())
    # Draft 2020-12 treats "format" as an annotation unless the validator is given a format checker.
    assert list(Draft202012Validator(schema).iter_errors(parsed)) == [], case
    with pytest.raises(SchemaError):
        decode(raw, TOPIC_MODELS[topic])  # type: ignore[type-var]
