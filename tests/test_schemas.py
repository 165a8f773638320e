"""The contract's models and (de)serialisation: round trips and every kind of bad input."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    AdapterUpdate,
    AssistantTurn,
    EventTooLargeError,
    InvalidEventError,
    MalformedEventError,
    Message,
    PredictionEvent,
    RewardEvent,
    SchemaError,
    TopicKey,
    TrainingExample,
    UnsupportedSchemaVersionError,
    decode,
    encode,
    partition_key,
    topic_registry,
)
from schemas.settings import ContractSettings


def prediction(**kw: object) -> PredictionEvent:
    base: dict[str, object] = {
        "model_id": "m1",
        "base_model": "smollm2",
        "messages": [Message(role="user", content="2+3?"), Message(role="assistant", content="5")],
        "turns": [AssistantTurn(message_index=1, completion_token_ids=[20], completion_logprobs=[-0.1])],
    }
    base.update(kw)
    return PredictionEvent(**base)


def reward(p: PredictionEvent, value: float = 1.0) -> RewardEvent:
    return RewardEvent(prediction_id=p.prediction_id, model_id=p.model_id, reward=value)


ids = st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,39}\Z")  # the contract's ModelId slug
texts = st.text(max_size=200)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
aware = st.datetimes(  # the contract's range: 1970 to 9999-12-30 in UTC
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 29),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)


@given(model_id=ids, content=texts, r=finite, created=aware, source=st.none() | texts)
def test_reward_and_prediction_round_trip(
    model_id: str, content: str, r: float, created: datetime, source: str | None
) -> None:
    p = PredictionEvent(
        model_id=model_id,
        base_model="b",
        created_at=created,
        messages=[Message(role="user", content=content), Message(role="assistant", content=content)],
        turns=[AssistantTurn(message_index=1, completion_token_ids=[1, 2], completion_logprobs=[-1.0, -2.5])],
        final_answer={"answer": content},
    )
    rw = RewardEvent(prediction_id=p.prediction_id, model_id=model_id, reward=r, source=source, created_at=created)
    assert decode(encode(p), PredictionEvent) == p
    assert decode(encode(rw), RewardEvent) == rw
    ex = TrainingExample.join(p, rw)
    assert decode(encode(ex), TrainingExample) == ex
    assert ex.example_id == rw.reward_id


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_reward_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        RewardEvent(prediction_id="p", model_id="m", reward=bad)
    # and on the wire: NaN is valid Python-JSON, must still be refused with a typed error
    raw = json.dumps(
        {
            "schema_version": 1,
            "reward_id": "r",
            "prediction_id": "p",
            "model_id": "m",
            "reward": bad,
            "created_at": "2026-01-01T00:00:00Z",
        }
    ).encode()
    with pytest.raises(InvalidEventError) as info:
        decode(raw, RewardEvent)
    assert info.value.raw == raw
    assert any(e["loc"] == "reward" for e in info.value.errors)


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError):
        RewardEvent(prediction_id="p", model_id="m", reward=1.0, created_at=datetime(2026, 1, 1))
    raw = json.dumps(
        {
            "schema_version": 1,
            "reward_id": "r",
            "prediction_id": "p",
            "model_id": "m",
            "reward": 1.0,
            "created_at": "2026-01-01T00:00:00",
        }
    ).encode()
    with pytest.raises(InvalidEventError, match="created_at"):
        decode(raw, RewardEvent)


@pytest.mark.parametrize("field", ["prediction_id", "model_id"])
def test_missing_or_empty_id_refused(field: str) -> None:
    good = json.loads(encode(RewardEvent(prediction_id="p", model_id="m", reward=0.0)))
    missing = {k: v for k, v in good.items() if k != field}
    with pytest.raises(InvalidEventError, match=field):
        decode(json.dumps(missing).encode(), RewardEvent)
    with pytest.raises(InvalidEventError, match=field):
        decode(json.dumps({**good, field: ""}).encode(), RewardEvent)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_unknown_schema_version_refused(version: object) -> None:
    good = json.loads(encode(RewardEvent(prediction_id="p", model_id="m", reward=0.0)))
    raw = json.dumps({**good, "schema_version": version}).encode()
    with pytest.raises(UnsupportedSchemaVersionError):
        decode(raw, RewardEvent)


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00", b"{not json", b"[1, 2]", b'"a string"', b"", None])
def test_malformed_bytes_refused_with_typed_error(raw: bytes | None) -> None:
    with pytest.raises(MalformedEventError) as info:
        decode(raw, RewardEvent)
    assert isinstance(info.value, SchemaError)
    assert info.value.raw == raw
    assert info.value.reason == "malformed"


def test_unknown_field_and_wrong_type_refused() -> None:
    good = json.loads(encode(RewardEvent(prediction_id="p", model_id="m", reward=0.0)))
    with pytest.raises(InvalidEventError):
        decode(json.dumps({**good, "surprise": 1}).encode(), RewardEvent)
    with pytest.raises(InvalidEventError):
        decode(json.dumps({**good, "reward": "high"}).encode(), RewardEvent)


def test_too_large_refused_both_ways() -> None:
    big = RewardEvent(prediction_id="p", model_id="m", reward=0.0, comment="x" * 4000)
    with pytest.raises(EventTooLargeError):
        encode(big, max_bytes=2048)
    with pytest.raises(EventTooLargeError):
        decode(encode(big), RewardEvent, max_bytes=2048)


def test_training_example_must_be_consistent() -> None:
    p = prediction()
    r = reward(p)
    other = reward(prediction())
    with pytest.raises(ValueError, match="another prediction"):
        TrainingExample(example_id=other.reward_id, model_id="m1", prediction=p, reward=other)
    with pytest.raises(ValueError, match="example_id"):
        TrainingExample(example_id="not-the-reward", model_id="m1", prediction=p, reward=r)


def test_turns_must_point_at_assistant_messages() -> None:
    with pytest.raises(ValueError, match="not an assistant"):
        prediction(turns=[AssistantTurn(message_index=0)])
    with pytest.raises(ValueError, match="beyond"):
        prediction(turns=[AssistantTurn(message_index=7)])
    with pytest.raises(ValueError, match="differ in length"):
        AssistantTurn(message_index=1, completion_token_ids=[1, 2], completion_logprobs=[-1.0])


def test_adapter_update_versions() -> None:
    sha = "0" * 64
    AdapterUpdate(model_id="m", version=0, base_model="b")
    AdapterUpdate(
        model_id="m",
        version=3,
        base_model="b",
        uri="s3://bkt/adapters/m/v3/",
        files={"adapter_model.safetensors": sha},
        parent_version=2,
    )
    with pytest.raises(ValueError, match="version 0"):
        AdapterUpdate(model_id="m", version=0, base_model="b", uri="s3://bkt/x/")
    with pytest.raises(ValueError, match="needs a uri"):
        AdapterUpdate(model_id="m", version=1, base_model="b")
    with pytest.raises(ValueError):
        AdapterUpdate(model_id="m", version=1, base_model="b", uri="s3://b/a/", files={"f": "not-a-sha"})


def test_events_are_frozen() -> None:
    r = RewardEvent(prediction_id="p", model_id="m", reward=1.0)
    with pytest.raises(ValueError):
        r.reward = 2.0  # type: ignore[misc]


def test_topic_registry_follows_the_contract() -> None:
    reg = topic_registry(ContractSettings(topic_prefix="x.", partitions=4))
    assert {spec.name for spec in reg.values()} == {
        "x.predictions",
        "x.rewards",
        "x.training-examples",
        "x.adapter-updates",
        "x.dead-letters",
    }
    assert reg[TopicKey.PREDICTIONS].partitions == reg[TopicKey.REWARDS].partitions == 4
    assert reg[TopicKey.ADAPTER_UPDATES].config["cleanup.policy"] == "compact"
    p = prediction()
    r = reward(p)
    # co-partitioning: a prediction and its rewards share the key
    assert partition_key(TopicKey.PREDICTIONS, p) == partition_key(TopicKey.REWARDS, r) == p.prediction_id.encode()
    assert partition_key(TopicKey.TRAINING_EXAMPLES, TrainingExample.join(p, r)) == b"m1"


def test_settings_precedence_and_secret_masking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_TOPIC_PREFIX", "env.")
    monkeypatch.setenv("MC_S3_SECRET_KEY", "hunter2")
    assert ContractSettings().topic_prefix == "env."
    assert ContractSettings(topic_prefix="arg.").topic_prefix == "arg."
    s = ContractSettings()
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert s.s3_secret_key is not None and s.s3_secret_key.get_secret_value() == "hunter2"
