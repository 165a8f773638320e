"""The topic registry: names, partition counts and configs the contract requires."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from schemas.events import AdapterUpdate, Event, PredictionEvent, RewardEvent, TrainingExample
from schemas.settings import ContractSettings

__all__ = ["KEY_FIELDS", "TopicKey", "TopicSpec", "partition_key", "topic_name", "topic_registry"]


class TopicKey(StrEnum):
    PREDICTIONS = "predictions"
    REWARDS = "rewards"
    TRAINING_EXAMPLES = "training-examples"
    ADAPTER_UPDATES = "adapter-updates"
    DEAD_LETTERS = "dead-letters"


@dataclass(frozen=True)
class TopicSpec:
    key: TopicKey
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    #: the event type carried (dead letters carry a wrapper of the original bytes)
    event_type: type[Event] | None = None


def topic_name(key: TopicKey, settings: ContractSettings | None = None) -> str:
    prefix = (settings or ContractSettings()).topic_prefix
    return f"{prefix}{key.value}"


def topic_registry(settings: ContractSettings | None = None) -> dict[TopicKey, TopicSpec]:
    """Every topic of the contract, shaped by ``settings``.

    predictions and rewards share partition count and key (prediction_id) so the join can run
    per partition; adapter-updates is compacted (key model_id) so a late node reads only the
    latest announcement per model.
    """
    s = settings or ContractSettings()
    n = s.partitions
    specs = [
        TopicSpec(TopicKey.PREDICTIONS, topic_name(TopicKey.PREDICTIONS, s), n, {}, PredictionEvent),
        TopicSpec(TopicKey.REWARDS, topic_name(TopicKey.REWARDS, s), n, {}, RewardEvent),
        TopicSpec(TopicKey.TRAINING_EXAMPLES, topic_name(TopicKey.TRAINING_EXAMPLES, s), n, {}, TrainingExample),
        TopicSpec(
            TopicKey.ADAPTER_UPDATES,
            topic_name(TopicKey.ADAPTER_UPDATES, s),
            1,
            {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"},
            AdapterUpdate,
        ),
        TopicSpec(TopicKey.DEAD_LETTERS, topic_name(TopicKey.DEAD_LETTERS, s), 1, {}, None),
    ]
    max_bytes = str(s.max_event_bytes + 65_536)  # room for record overhead
    return {
        spec.key: TopicSpec(
            spec.key, spec.name, spec.partitions, {**spec.config, "max.message.bytes": max_bytes}, spec.event_type
        )
        for spec in specs
    }


#: The field whose value keys each topic's records (the contract's partitioning).
KEY_FIELDS: dict[TopicKey, str] = {
    TopicKey.PREDICTIONS: "prediction_id",
    TopicKey.REWARDS: "prediction_id",
    TopicKey.TRAINING_EXAMPLES: "model_id",
    # model_id for live updates, "{model_id}/{stage}" for candidates and canaries (AdapterUpdate.record_key)
    TopicKey.ADAPTER_UPDATES: "record_key",
}


def partition_key(key: TopicKey, event: Event) -> bytes:
    """The record key of ``event`` on topic ``key`` (UTF-8 of the keying field)."""
    return str(getattr(event, KEY_FIELDS[key])).encode()
