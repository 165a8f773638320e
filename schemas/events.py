"""The events of the contract (pydantic v2).

Every event carries ``schema_version``, its own id, ``model_id`` and a timezone-aware ``created_at``.
Validation is strict where a wrong value would poison training: rewards must be finite, datetimes
must carry a timezone, ids must be non-empty and short, unknown fields and unknown schema versions
are refused.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, FiniteFloat, field_validator, model_validator

__all__ = [
    "SCHEMA_VERSION",
    "AdapterUpdate",
    "AssistantTurn",
    "Event",
    "GateDecision",
    "Id",
    "Message",
    "ModelId",
    "OffsetRange",
    "PredictionEvent",
    "RewardEvent",
    "Stage",
    "ToolCall",
    "TrainingExample",
    "TrainingWindow",
    "new_id",
    "utcnow",
]

#: The schema version this code writes and the only one it reads.
SCHEMA_VERSION: Literal[1] = 1

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/-]+$")]
#: A model id becomes a folder on nodes and trainers, an S3 key prefix and part of vLLM's adapter name
#: (``{model_id}@v{N}``): a strict slug, so it can never be ``..``, hold a ``/`` or fake a version.
ModelId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def new_id() -> str:
    """A fresh random id (32 hex digits)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolCall(_Model):
    id: str
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class Message(_Model):
    """One chat message of a trajectory (the SDK's ``MessageT``)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class AssistantTurn(_Model):
    """What the trainer needs of one sampled assistant message for off-policy correction."""

    message_index: int = Field(ge=0, description="index of the assistant message in ``messages``")
    completion_token_ids: list[int] = Field(default_factory=list)
    #: the sampler's logprob of each completion token; ``None`` when the server did not return them
    completion_logprobs: list[FiniteFloat] | None = None
    finish_reason: str | None = None

    @model_validator(mode="after")
    def _lengths_match(self) -> AssistantTurn:
        if self.completion_logprobs is not None and len(self.completion_logprobs) != len(self.completion_token_ids):
            raise ValueError("completion_logprobs and completion_token_ids differ in length")
        return self


class Event(_Model):
    """Fields every event carries."""

    schema_version: Literal[1] = SCHEMA_VERSION
    model_id: ModelId
    created_at: AwareDatetime = Field(default_factory=utcnow)

    @field_validator("created_at")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        # Parts convert it to UTC and to epoch milliseconds (Kafka's clock): a date at the edge of
        # Python's range (0001-01-01T00:00+05:00) overflowed there and crashed the join on every replay.
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("created_at is out of range") from None
        if not _EARLIEST <= utc <= _LATEST:
            raise ValueError(f"created_at must lie between {_EARLIEST.date()} and {_LATEST.date()} (UTC)")
        return value

    @property
    def event_id(self) -> str:
        """The event's own id (the idempotency key of whoever consumes it)."""
        raise NotImplementedError


class PredictionEvent(Event):
    """One agent run: the whole trajectory and its final answer or failure."""

    prediction_id: Id = Field(default_factory=new_id)
    base_model: str
    adapter_version: int = Field(0, ge=0, description="0 = the base model")
    messages: list[Message]
    final_answer: dict[str, Any] | None = None
    error: str | None = None
    turns: list[AssistantTurn] = Field(default_factory=list)
    timings: dict[str, NonNegFloat] = Field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return self.prediction_id

    @model_validator(mode="after")
    def _turns_point_at_assistant_messages(self) -> PredictionEvent:
        for turn in self.turns:
            if turn.message_index >= len(self.messages):
                raise ValueError(f"turn points at message {turn.message_index}, beyond the trajectory")
            if self.messages[turn.message_index].role != "assistant":
                raise ValueError(f"turn points at message {turn.message_index}, not an assistant message")
        return self


class RewardEvent(Event):
    """A scalar reward for one prediction. Several rewards per prediction are allowed."""

    reward_id: Id = Field(default_factory=new_id)
    prediction_id: Id
    reward: FiniteFloat
    source: str | None = Field(None, max_length=256)
    comment: str | None = Field(None, max_length=4096)

    @property
    def event_id(self) -> str:
        return self.reward_id


class TrainingExample(Event):
    """A prediction joined with one of its rewards. ``example_id`` is the reward's id."""

    example_id: Id
    prediction: PredictionEvent
    reward: RewardEvent

    @property
    def event_id(self) -> str:
        return self.example_id

    @model_validator(mode="after")
    def _consistent(self) -> TrainingExample:
        if self.example_id != self.reward.reward_id:
            raise ValueError("example_id must equal reward.reward_id")
        if self.prediction.prediction_id != self.reward.prediction_id:
            raise ValueError("the reward is for another prediction")
        if not (self.model_id == self.prediction.model_id == self.reward.model_id):
            raise ValueError("model_id differs between example, prediction and reward")
        return self

    @classmethod
    def join(cls, prediction: PredictionEvent, reward: RewardEvent) -> TrainingExample:
        return cls(example_id=reward.reward_id, model_id=prediction.model_id, prediction=prediction, reward=reward)


class OffsetRange(_Model):
    topic: str
    partition: int = Field(ge=0)
    first_offset: int = Field(ge=0)
    last_offset: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> OffsetRange:
        if self.last_offset < self.first_offset:
            raise ValueError("last_offset < first_offset")
        return self


class TrainingWindow(_Model):
    ranges: list[OffsetRange] = Field(default_factory=list)
    example_count: int = Field(0, ge=0)


#: What an AdapterUpdate asks of nodes (issue #14, :mod:`schemas.canary`): ``live`` serve it to every
#: request (today's meaning; an update without the field is live); ``candidate`` a trainer's new version
#: waiting for the gate (nodes do not serve it); ``canary`` the gate's choice of a candidate to try on a
#: share of the model's traffic.
Stage = Literal["live", "candidate", "canary"]


class GateDecision(_Model):
    """Why a live-stage update was announced by the gate (or a person through ``mc adapters``).

    ``promote``: the candidate goes live (the update announces ``candidate_version``). ``refuse`` (worse
    than live by more than the margin) and ``inconclusive`` (no decision within the gate's maximum number
    of rewards): the live version stays (the update re-announces it with ``rollback=True``) and the
    candidate is never served again.
    """

    outcome: Literal["promote", "refuse", "inconclusive"]
    candidate_version: int = Field(ge=1)
    live_version: int = Field(ge=0)
    decided_by: Literal["gate", "person"] = "gate"
    candidate_rewards: int = Field(0, ge=0)
    candidate_mean: FiniteFloat | None = None
    live_rewards: int = Field(0, ge=0)
    live_mean: FiniteFloat | None = None
    #: bounds of (candidate mean - live mean) at the gate's confidence when it decided
    diff_low: FiniteFloat | None = None
    diff_high: FiniteFloat | None = None
    margin: FiniteFloat | None = None
    confidence: FiniteFloat | None = None
    reason: str = Field("", max_length=1024)


class AdapterUpdate(Event):
    """Announces the adapter version that should serve ``model_id``. Version 0 is the base model.

    ``stage`` and ``decision`` came with the canary (issue #14). At their defaults (``live``, ``None``)
    they are left out of the JSON and of the signed canonical form, so an update written before them
    reads, verifies and encodes exactly as it did.
    """

    update_id: Id = Field(default_factory=new_id)
    version: int = Field(ge=0)
    uri: str | None = Field(None, pattern=r"^s3://[^/]+/.+")
    files: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(default_factory=dict)
    base_model: str
    parent_version: int | None = Field(None, ge=0)
    window: TrainingWindow = Field(default_factory=TrainingWindow)
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    #: set when this announcement re-announces an older version (a rollback)
    rollback: bool = False
    stage: Stage = Field("live", exclude_if=lambda v: v == "live")
    #: set on the gate's (or a person's) verdict about a canary
    decision: GateDecision | None = Field(None, exclude_if=lambda v: v is None)
    #: HMAC-SHA256 of everything else, with the key trainers and nodes share (schemas.signing):
    #: nodes serve only what a trainer announced
    signature: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @property
    def event_id(self) -> str:
        return self.update_id

    @property
    def record_key(self) -> str:
        """Its key on the compacted topic: live updates keep ``model_id`` (one live record per model
        survives compaction); candidate and canary updates get their own keys beside it, so neither
        ever compacts away the live record a late node needs."""
        return self.model_id if self.stage == "live" else f"{self.model_id}/{self.stage}"

    @model_validator(mode="after")
    def _base_has_no_files(self) -> AdapterUpdate:
        if self.version == 0 and (self.uri is not None or self.files):
            raise ValueError("version 0 is the base model: it has no uri and no files")
        if self.version > 0 and (self.uri is None or not self.files):
            raise ValueError("an adapter version needs a uri and the sha256 of its files")
        if self.stage != "live" and (self.version == 0 or self.rollback or self.decision is not None):
            raise ValueError(f"a {self.stage} update names a new adapter version: no rollback, no decision")
        d = self.decision
        if d is not None:
            if d.outcome == "promote" and (self.rollback or self.version != d.candidate_version):
                raise ValueError("a promotion announces the candidate's version, not as a rollback")
            if d.outcome != "promote" and (not self.rollback or self.version != d.live_version):
                raise ValueError("a refusal re-announces the live version as a rollback")
        return self
