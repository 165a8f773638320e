"""The example JSON the stream processor builds around the events' bytes (``schemas/examples.py``)
decodes to exactly the contract's ``TrainingExample.join`` of the two events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from schemas import Message, PredictionEvent, RewardEvent, TrainingExample, decode, encode
from schemas.events import AssistantTurn
from schemas.examples import training_example_json
from stream_processors.join import iso

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,30}\Z")
event_ids = st.from_regex(r"\A[A-Za-z0-9._:@/-]{1,40}\Z")
texts = st.text(max_size=80)
# the contract's range of created_at (schemas.events: 1970 to 9999-12-30 UTC)
aware = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 29),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5))]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[PredictionEvent, RewardEvent]:
    model_id = draw(ids)
    messages = [Message(role="user", content=draw(texts))]
    turns = []
    if draw(st.booleans()):
        messages.append(Message(role="assistant", content=draw(texts)))
        tokens = draw(st.lists(st.integers(0, 50_000), max_size=5))
        logprobs = draw(st.none() | st.lists(st.floats(-50, 0), min_size=len(tokens), max_size=len(tokens)))
        turns.append(AssistantTurn(message_index=1, completion_token_ids=tokens, completion_logprobs=logprobs))
    prediction = PredictionEvent(
        model_id=model_id,
        prediction_id=draw(event_ids),
        base_model=draw(texts),
        adapter_version=draw(st.integers(0, 1000)),
        messages=messages,
        final_answer=draw(st.none() | st.dictionaries(texts, json_values, max_size=3)),
        error=draw(st.none() | texts),
        turns=turns,
        created_at=draw(aware),
    )
    reward = RewardEvent(
        model_id=model_id,
        prediction_id=prediction.prediction_id,
        reward_id=draw(event_ids),
        reward=draw(st.floats(allow_nan=False, allow_infinity=False)),
        source=draw(st.none() | st.text(max_size=40)),
        comment=draw(st.none() | texts),
        created_at=draw(aware),
    )
    return prediction, reward


@given(pairs())
def test_built_example_decodes_to_the_contracts_join(pair: tuple[PredictionEvent, RewardEvent]) -> None:
    prediction, reward = pair
    created = max(iso(prediction.created_at), iso(reward.created_at))  # what the join passes
    built = training_example_json(prediction.model_id, reward.reward_id, created, encode(prediction), encode(reward))
    expected = TrainingExample.join(prediction, reward).model_copy(
        update={"created_at": max(prediction.created_at, reward.created_at)}
    )
    assert decode(built, TrainingExample) == expected


def test_the_events_bytes_are_kept_as_they_came() -> None:
    """Pretty-printed (still valid) event JSON travels unchanged inside the example."""
    prediction = PredictionEvent(model_id="m", base_model="b", messages=[Message(role="user", content="é")])
    reward = RewardEvent(model_id="m", prediction_id=prediction.prediction_id, reward=0.5)
    pretty = prediction.model_dump_json(indent=2).encode()
    built = training_example_json("m", reward.reward_id, iso(reward.created_at), pretty, encode(reward))
    assert pretty in built
    assert decode(built, TrainingExample).prediction == prediction
