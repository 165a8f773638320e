"""The join's pure logic: one prediction_id's state, and what each arriving record does to it.

No Kafka and no faust here, so every ordering case is unit-testable. The worker keeps one
:class:`JoinState` per prediction_id in a faust table and calls :func:`on_prediction` /
:func:`on_reward` for each record, :func:`expire` when the watermark passes the state's deadline.

Exactly one example per distinct reward_id, and none lost after a crash: a state remembers, per
emitted reward, which record *triggered* the emission (topic kind + offset). A record seen again at
the same offset is a replay after a crash (its offset was not committed, so its example may not be
durable): it emits again. The same reward at another offset is a duplicate delivery: skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC
from typing import Literal

from schemas.events import PredictionEvent, RewardEvent

__all__ = [
    "Done",
    "Emit",
    "Expired",
    "JoinState",
    "Outcome",
    "Pending",
    "Record",
    "Refusal",
    "example_bytes",
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
    """An emitted reward: the record that triggered the emission; the reward's text when that was a prediction."""

    kind: Literal["P", "R"]
    offset: int
    text: str | None = None


@dataclass(slots=True)
class JoinState:
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

    # -- bytes: one JSON line of metadata, then the prediction's original bytes -------------------

    def to_bytes(self) -> bytes:
        meta = {
            "p": self.partition,
            "t": self.last_ms,
            "po": self.pred_offset,
            "pm": self.pred_model,
            "pa": self.pred_adapter,
            "pc": self.pred_created,
            "pend": {rid: [x.offset, x.time_ms, x.text] for rid, x in self.pending.items()},
            "done": {rid: [x.kind, x.offset, x.text] for rid, x in self.done.items()},
        }
        return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + (self.prediction or b"")

    @classmethod
    def from_bytes(cls, data: bytes) -> JoinState:
        head, _, body = data.partition(b"\n")
        meta = json.loads(head)
        return cls(
            partition=meta["p"],
            last_ms=meta["t"],
            prediction=body if meta["po"] is not None else None,
            pred_offset=meta["po"],
            pred_model=meta["pm"],
            pred_adapter=meta["pa"],
            pred_created=meta["pc"],
            pending={rid: Pending(o, t, x) for rid, (o, t, x) in meta["pend"].items()},
            done={rid: Done(k, o, x) for rid, (k, o, x) in meta["done"].items()},
        )


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


def iso(dt_value: object) -> str:
    """created_at as a fixed-width UTC ISO string, so two of them compare as text."""
    from datetime import datetime

    assert isinstance(dt_value, datetime)
    return dt_value.astimezone(UTC).isoformat(timespec="microseconds")


def example_bytes(model_id: str, example_id: str, created_at: str, prediction: bytes, reward: bytes) -> bytes:
    """A TrainingExample's JSON built around the two events' validated original bytes (no re-encoding)."""
    head = (
        f'{{"schema_version":1,"model_id":{json.dumps(model_id)},"created_at":"{created_at}",'
        f'"example_id":{json.dumps(example_id)},"prediction":'
    )
    return b"".join((head.encode(), prediction, b',"reward":', reward, b"}"))


def _emit(
    state: JoinState, reward_id: str, reward: float, reward_created: str, reward_raw: bytes, time_ms: int, replay: bool
) -> Emit:
    assert state.prediction is not None and state.pred_model is not None and state.pred_created is not None
    created = max(state.pred_created, reward_created)
    value = example_bytes(state.pred_model, reward_id, created, state.prediction, reward_raw)
    return Emit(reward_id, state.pred_model, state.pred_adapter, reward, time_ms, value, replay)


def _parse_pending(text: str) -> RewardEvent:
    return RewardEvent.model_validate_json(text)


def on_prediction(state: JoinState | None, rec: Record, event: PredictionEvent) -> Outcome:
    """A prediction arrives: store it, and join every reward that waited for it."""
    if state is None:
        state = JoinState(partition=rec.partition, last_ms=rec.event_time_ms)
    out = Outcome(state)
    if state.pred_offset is not None:
        if state.pred_offset != rec.offset:
            out.count("duplicate_predictions")
            out.changed = False
            return out
        # Replay after a crash: re-emit what this record emitted the first time.
        for rid, done in state.done.items():
            if done.kind == "P" and done.offset == rec.offset and done.text is not None:
                reward = _parse_pending(done.text)
                out.emits.append(
                    _emit(
                        state,
                        rid,
                        reward.reward,
                        iso(reward.created_at),
                        done.text.encode(),
                        rec.event_time_ms,
                        replay=True,
                    )
                )
        out.count("replayed", len(out.emits))
        out.changed = False
        return out
    state.prediction = rec.raw
    state.pred_offset = rec.offset
    state.pred_model = event.model_id
    state.pred_adapter = event.adapter_version
    state.pred_created = iso(event.created_at)
    state.last_ms = max(state.last_ms, rec.event_time_ms)
    for rid, pending in list(state.pending.items()):
        reward = _parse_pending(pending.text)
        del state.pending[rid]
        if reward.model_id != event.model_id:
            out.refusals.append(
                Refusal(
                    "model_mismatch",
                    f"reward for model {reward.model_id!r}, prediction of {event.model_id!r}",
                    "R",
                    rec.partition,
                    pending.offset,
                    pending.text.encode(),
                )
            )
            continue
        state.done[rid] = Done("P", rec.offset, pending.text)
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
    out.count("joined", len(out.emits))
    return out


def on_reward(state: JoinState | None, rec: Record, event: RewardEvent) -> Outcome:
    """A reward arrives: join it now if its prediction is here, else wait for it."""
    rid = event.reward_id
    if state is None:
        state = JoinState(partition=rec.partition, last_ms=rec.event_time_ms)
    out = Outcome(state)
    done = state.done.get(rid)
    if done is not None:
        out.changed = False
        if done.kind == "R" and done.offset == rec.offset:
            out.emits.append(
                _emit(state, rid, event.reward, iso(event.created_at), rec.raw, rec.event_time_ms, replay=True)
            )
            out.count("replayed")
        else:
            out.count("duplicate_rewards")
        return out
    if rid in state.pending:
        out.changed = False
        if state.pending[rid].offset != rec.offset:
            out.count("duplicate_rewards")
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
        out.changed = False
        return out
    state.done[rid] = Done("R", rec.offset)
    out.emits.append(_emit(state, rid, event.reward, iso(event.created_at), rec.raw, rec.event_time_ms, replay=False))
    out.count("joined")
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
