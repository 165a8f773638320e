"""The join's pure logic: ordering, duplicates, several rewards, replays after a crash, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Message, PredictionEvent, RewardEvent, TrainingExample, decode, encode
from stream_processors.codec import decode_join_state, encode_join_state
from stream_processors.join import JoinState, Outcome, Record, expire, on_prediction, on_reward

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _prediction(model_id: str = "m") -> PredictionEvent:
    return PredictionEvent(
        model_id=model_id,
        base_model="b",
        adapter_version=2,
        created_at=T0,
        messages=[Message(role="user", content="q ü"), Message(role="assistant", content="a")],
    )


def _reward(p: PredictionEvent, i: int, model_id: str | None = None) -> RewardEvent:
    return RewardEvent(
        reward_id=f"r{i}",
        prediction_id=p.prediction_id,
        model_id=model_id or p.model_id,
        reward=i / 10,
        created_at=T0 + timedelta(seconds=i),
    )


class Log:
    """Feeds records to the pure join like the worker does, keeping offsets per topic."""

    def __init__(self) -> None:
        self.state: JoinState | None = None
        self.offsets = {"P": 0, "R": 0}
        self.emitted: list[str] = []
        self.outcomes: list[Outcome] = []

    def feed(self, event: PredictionEvent | RewardEvent, offset: int | None = None) -> Outcome:
        kind: Literal["P", "R"] = "P" if isinstance(event, PredictionEvent) else "R"
        if offset is None:
            offset = self.offsets[kind]
            self.offsets[kind] += 1
        rec = Record(kind, 0, offset, int(event.created_at.timestamp() * 1000), encode(event))
        out = (
            on_prediction(self.state, rec, event)
            if isinstance(event, PredictionEvent)
            else on_reward(self.state, rec, event)
        )
        if out.changed:  # what the worker stores; a round trip through bytes, as through the changelog
            self.state = decode_join_state(encode_join_state(out.state))
        self.emitted += [e.example_id for e in out.emits]
        self.outcomes.append(out)
        return out


def test_reward_after_prediction_joins_into_a_valid_example() -> None:
    p = _prediction()
    r = _reward(p, 1)
    log = Log()
    assert log.feed(p).emits == []
    out = log.feed(r)
    assert [e.example_id for e in out.emits] == ["r1"]
    example = decode(out.emits[0].value, TrainingExample)
    assert example == TrainingExample.join(p, r).model_copy(update={"created_at": r.created_at})
    assert out.emits[0].model_id == "m" and out.emits[0].adapter_version == 2 and out.emits[0].reward == 0.1


def test_reward_first_waits_then_joins() -> None:
    p = _prediction()
    log = Log()
    assert log.feed(_reward(p, 1)).emits == []
    assert log.state is not None and "r1" in log.state.pending
    out = log.feed(p)
    assert [e.example_id for e in out.emits] == ["r1"]
    assert log.state is not None and not log.state.pending


def test_model_mismatch_is_refused_in_both_orders() -> None:
    p = _prediction()
    log = Log()
    log.feed(_reward(p, 1, model_id="other"))
    out = log.feed(p)
    assert out.emits == [] and [r.reason for r in out.refusals] == ["model_mismatch"]
    out = log.feed(_reward(p, 2, model_id="other"))
    assert out.emits == [] and [r.reason for r in out.refusals] == ["model_mismatch"]


events_order = st.integers(min_value=1, max_value=5).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), max_size=6), st.randoms(use_true_random=False))
)


@settings(max_examples=200, deadline=None)
@given(events_order)
def test_any_order_with_duplicates_emits_each_reward_once(case: tuple[int, list[int], object]) -> None:
    n, dups, rnd = case
    p = _prediction()
    rewards = [_reward(p, i) for i in range(n)]
    stream: list[PredictionEvent | RewardEvent] = [p, p, *rewards, *(rewards[i] for i in dups)]
    rnd.shuffle(stream)  # type: ignore[attr-defined]
    log = Log()
    for ev in stream:
        log.feed(ev)
    assert sorted(log.emitted) == sorted(r.reward_id for r in rewards)


@settings(max_examples=200, deadline=None)
@given(events_order, st.data())
def test_replays_after_a_crash_reemit_what_may_be_lost(
    case: tuple[int, list[int], object], data: st.DataObject
) -> None:
    """A crash replays the records after the last commit; their examples come again, none is missing."""
    n, dups, rnd = case
    p = _prediction()
    rewards = [_reward(p, i) for i in range(n)]
    stream: list[PredictionEvent | RewardEvent] = [p, *rewards, *(rewards[i] for i in dups)]
    rnd.shuffle(stream)  # type: ignore[attr-defined]
    log = Log()
    fed: list[tuple[PredictionEvent | RewardEvent, int]] = []
    for ev in stream:
        kind = "P" if isinstance(ev, PredictionEvent) else "R"
        fed.append((ev, log.offsets[kind]))
        log.feed(ev)
    # Crash: the examples of records after the committed point are lost; the state (changelog) kept all.
    committed = data.draw(st.integers(0, len(fed)))
    durable = set()
    for (ev, off), out in zip(fed, log.outcomes, strict=True):
        if fed.index((ev, off)) < committed:
            durable |= {e.example_id for e in out.emits}
    log.emitted = []
    for ev, off in fed[committed:]:
        log.feed(ev, offset=off)
    assert durable | set(log.emitted) == {r.reward_id for r in rewards}


def test_duplicate_prediction_at_another_offset_emits_nothing() -> None:
    p = _prediction()
    log = Log()
    log.feed(_reward(p, 1))
    log.feed(p)
    out = log.feed(p)
    assert out.emits == [] and out.counts == {"duplicate_predictions": 1} and not out.changed


def test_expiry_by_event_time() -> None:
    p = _prediction()
    log = Log()
    log.feed(_reward(p, 1))
    assert log.state is not None
    ttl = 60_000
    t = log.state.last_ms
    assert expire(log.state, t + ttl - 1, ttl) is None
    res = expire(log.state, t + ttl, ttl)
    assert res is not None and not res.unmatched_prediction
    assert [(r.reason, r.offset) for r in res.unmatched_rewards] == [("expired_unmatched", 0)]
    assert decode(res.unmatched_rewards[0].raw, RewardEvent).reward_id == "r1"

    log2 = Log()
    log2.feed(p)
    assert log2.state is not None
    res2 = expire(log2.state, log2.state.last_ms + ttl, ttl)
    assert res2 is not None and res2.unmatched_prediction and res2.unmatched_rewards == []
