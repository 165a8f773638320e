"""The join's pure logic: one prediction_id's state, and what each arriving record does to it.

No Kafka and no faust here, so every ordering case is unit-testable. The worker keeps one
:class:`JoinState` per prediction_id in a faust table and calls :func:`on_prediction` /
:func:`on_reward` for each record, :func:`expire` when the watermark passes the state's deadline.

Exactly one example per distinct reward_id, and none lost after a crash: a state remembers, per
emitted reward, which records *triggered* the emission (topic kind + offset). A record seen again at
one of those offsets is a replay after a crash (its offset was not committed, so its example may not
be durable): it emits again, and the state is written again, so that a state a worker held only in
its local store (its changelog record attached to an offset that was never committed) reaches the
changelog. The same reward at another offset is a duplicate delivery: skipped.

Two workers can process one partition's records in different interleavings of the two topics (before
and after a crash or a rebalance), and faust publishes a commit's changelog records grouped by source
partition, not in processing order. A state only ever gains information until it expires (the
prediction arrives once, pending rewards become done, done rewards stay done), so recovery does not
keep the last changelog record of a key but :meth:`JoinState.merge` of all of them: the union, which
is the newest state whatever the order, and keeps every history's triggers so a replay re-emits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from schemas.events import PredictionEvent, RewardEvent
from schemas.examples import training_example_json

__all__ = [
    "Done",
    "Emit",
    "Expired",
    "JoinState",
    "Outcome",
    "Pending",
    "Record",
    "Refusal",
    "expire",
    "iso",
    "on_prediction",
    "on_reward",
]


@dataclass(frozen=True, slots=True)
class Record:
    """Where a record came from and its event time (already clamped by the caller)."""

    kind: Literal["P", "R"]
    partition: int
    offset: int
    event_time_ms: int
    raw: bytes


@dataclass(slots=True)
class Pending:
    """A reward waiting for its prediction."""

    offset: int
    time_ms: int
    text: str


@dataclass(slots=True)
class Done:
    """An emitted reward: the record that triggered the emission; the reward's text when that was a prediction.

    ``also``: triggers of the same emission in other histories of the partition (merged states)."""

    kind: Literal["P", "R"]
    offset: int
    text: str | None = None
    also: list[tuple[Literal["P", "R"], int]] = field(default_factory=list)

    def triggered_by(self, kind: Literal["P", "R"], offset: int) -> bool:
        return (self.kind == kind and self.offset == offset) or (kind, offset) in self.also

    def merged(self, other: Done) -> Done:
        """Every trigger of both; the reward's text from whichever has it."""
        triggers = {(self.kind, self.offset), *self.also, (other.kind, other.offset), *other.also}
        triggers.discard((self.kind, self.offset))
        return Done(self.kind, self.offset, self.text or other.text, sorted(triggers))


@dataclass(slots=True)
class JoinState:
    """One prediction_id's join state (its bytes in the changelog: :mod:`stream_processors.codec`)."""

    partition: int
    last_ms: int
    prediction: bytes | None = None
    pred_offset: int | None = None
    pred_model: str | None = None
    pred_adapter: int = 0
    pred_created: str | None = None
    pending: dict[str, Pending] = field(default_factory=dict)
    done: dict[str, Done] = field(default_factory=dict)

    def deadline_ms(self, ttl_ms: int) -> int:
        return self.last_ms + ttl_ms

    def merge(self, other: JoinState) -> JoinState:
        """The union of two states of one key (recovery: the changelog's records in any order, a local store).

        The prediction is the one at the lower offset (the first delivery; a later one is a
        duplicate), done rewards stay done with the triggers of both, a reward pending in one and
        done in the other is done."""
        if other.pred_offset is not None and (self.pred_offset is None or other.pred_offset < self.pred_offset):
            first, second = other, self
        else:
            first, second = self, other
        done = dict(second.done)
        for rid, d in first.done.items():
            done[rid] = d.merged(done[rid]) if rid in done else d
        pending = {rid: p for rid, p in {**second.pending, **first.pending}.items() if rid not in done}
        return replace(first, last_ms=max(first.last_ms, second.last_ms), pending=pending, done=done)


@dataclass(frozen=True, slots=True)
class Emit:
    """A training example to publish (key = model_id)."""

    example_id: str
    model_id: str
    adapter_version: int
    reward: float
    event_time_ms: int
    value: bytes
    #: re-emitted because its triggering record was replayed (metrics already counted it)
    replay: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """A record that cannot join (goes to dead-letters)."""

    reason: str
    error: str
    kind: Literal["P", "R"]
    partition: int
    offset: int
    raw: bytes


@dataclass(slots=True)
class Outcome:
    state: JoinState
    emits: list[Emit] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    #: counter name -> increment
    counts: dict[str, int] = field(default_factory=dict)
    #: False when the record changed nothing (a duplicate): no table write needed
    changed: bool = True

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def iso(dt_value: datetime) -> str:
    """created_at as a fixed-width UTC ISO string, so two of them compare as text."""
    return dt_value.astimezone(UTC).isoformat(timespec="microseconds")


def _emit(
    state: JoinState, reward_id: str, reward: float, reward_created: str, reward_raw: bytes, time_ms: int, replay: bool
) -> Emit:
    assert state.prediction is not None and state.pred_model is not None and state.pred_created is not None
    created = max(state.pred_created, reward_created)
    value = training_example_json(state.pred_model, reward_id, created, state.prediction, reward_raw)
    return Emit(reward_id, state.pred_model, state.pred_adapter, reward, time_ms, value, replay)


def _parse_pending(text: str) -> RewardEvent:
    return RewardEvent.model_validate_json(text)


def _join_waiting(state: JoinState, out: Outcome, rec: Record) -> None:
    """Join every pending reward with the stored prediction; ``rec`` (the record being handled) is the
    trigger. Pending rewards and a prediction meet here when the prediction arrives, and in a state
    merged at recovery from two histories (one had the prediction, the other a waiting reward)."""
    joined = 0
    for rid, pending in list(state.pending.items()):
        reward = _parse_pending(pending.text)
        del state.pending[rid]
        if reward.model_id != state.pred_model:
            out.refusals.append(
                Refusal(
                    "model_mismatch",
                    f"reward for model {reward.model_id!r}, prediction of {state.pred_model!r}",
                    "R",
                    rec.partition,
                    pending.offset,
                    pending.text.encode(),
                )
            )
            continue
        state.done[rid] = Done(rec.kind, rec.offset, pending.text)
        out.emits.append(
            _emit(
                state,
                rid,
                reward.reward,
                iso(reward.created_at),
                pending.text.encode(),
                max(pending.time_ms, rec.event_time_ms),
                replay=False,
            )
        )
        joined += 1
    if joined:
        out.count("joined", joined)


def _reemit(state: JoinState, out: Outcome, rec: Record, skip: str | None = None) -> None:
    """A replayed record emits again what it triggered (rewards whose text the state keeps)."""
    replayed = 0
    for rid, done in state.done.items():
        if rid != skip and done.text is not None and done.triggered_by(rec.kind, rec.offset):
            reward = _parse_pending(done.text)
            text = done.text.encode()
            out.emits.append(
                _emit(state, rid, reward.reward, iso(reward.created_at), text, rec.event_time_ms, replay=True)
            )
            replayed += 1
    if replayed:
        out.count("replayed", replayed)


def on_prediction(state: JoinState | None, rec: Record, event: PredictionEvent) -> Outcome:
    """A prediction arrives: store it, and join every reward that waited for it."""
    if state is None:
        state = JoinState(partition=rec.partition, last_ms=rec.event_time_ms)
    out = Outcome(state)
    if state.pred_offset is not None:
        if state.pred_offset == rec.offset:
            # Replay after a crash: re-emit what this record emitted the first time, and write the
            # state again (changed stays True): its changelog record may never have been published.
            _reemit(state, out, rec)
        else:
            out.count("duplicate_predictions")
        _join_waiting(state, out, rec)
        out.changed = state.pred_offset == rec.offset or bool(out.emits or out.refusals)
        return out
    state.prediction = rec.raw
    state.pred_offset = rec.offset
    state.pred_model = event.model_id
    state.pred_adapter = event.adapter_version
    state.pred_created = iso(event.created_at)
    state.last_ms = max(state.last_ms, rec.event_time_ms)
    _join_waiting(state, out, rec)
    if not out.emits:
        out.count("joined", 0)
    return out


def on_reward(state: JoinState | None, rec: Record, event: RewardEvent) -> Outcome:
    """A reward arrives: join it now if its prediction is here, else wait for it."""
    rid = event.reward_id
    if state is None:
        state = JoinState(partition=rec.partition, last_ms=rec.event_time_ms)
    out = Outcome(state)
    done = state.done.get(rid)
    if done is not None:
        if done.triggered_by("R", rec.offset):  # a replay: emit again, write the state again
            if done.text is None:  # triggered by this very reward: its bytes are the record's
                out.emits.append(
                    _emit(state, rid, event.reward, iso(event.created_at), rec.raw, rec.event_time_ms, replay=True)
                )
                out.count("replayed")
            _reemit(state, out, rec, skip=rid if done.text is None else None)
        else:
            out.changed = False
            out.count("duplicate_rewards")
        if state.prediction is not None and state.pending:
            _join_waiting(state, out, rec)
            out.changed = True
        return out
    if rid in state.pending:
        if state.pending[rid].offset != rec.offset:
            out.count("duplicate_rewards")
        if state.prediction is not None:  # a merged state: the prediction is here, join now
            _join_waiting(state, out, rec)
        elif state.pending[rid].offset != rec.offset:
            out.changed = False  # a duplicate; a replay (same offset) writes the state again
        return out
    state.last_ms = max(state.last_ms, rec.event_time_ms)
    if state.prediction is None:
        state.pending[rid] = Pending(rec.offset, rec.event_time_ms, rec.raw.decode())
        out.count("rewards_waiting")
        return out
    if event.model_id != state.pred_model:
        out.refusals.append(
            Refusal(
                "model_mismatch",
                f"reward for model {event.model_id!r}, prediction of {state.pred_model!r}",
                "R",
                rec.partition,
                rec.offset,
                rec.raw,
            )
        )
        out.changed = bool(state.pending)
        _join_waiting(state, out, rec)
        return out
    state.done[rid] = Done("R", rec.offset)
    out.emits.append(_emit(state, rid, event.reward, iso(event.created_at), rec.raw, rec.event_time_ms, replay=False))
    out.count("joined")
    _join_waiting(state, out, rec)
    return out


@dataclass(frozen=True, slots=True)
class Expired:
    """What expiry dropped from one state."""

    unmatched_prediction: bool
    unmatched_rewards: list[Refusal]
    joined: bool


def expire(state: JoinState, watermark_ms: int, ttl_ms: int) -> Expired | None:
    """None while the state's deadline is after the watermark; else what is dropped with it."""
    if state.deadline_ms(ttl_ms) > watermark_ms:
        return None
    error = f"no prediction within {ttl_ms / 1000:g} s of event time"
    rewards = [
        Refusal("expired_unmatched", error, "R", state.partition, p.offset, p.text.encode())
        for p in state.pending.values()
    ]
    return Expired(
        unmatched_prediction=state.prediction is not None and not state.done,
        unmatched_rewards=rewards,
        joined=bool(state.done),
    )
