"""``mc topics ensure``: create the contract's topics, and check the ones that exist."""

from __future__ import annotations

import time
from collections.abc import Callable

from schemas.errors import TopicError
from schemas.kafka_config import kafka_config
from schemas.settings import ContractSettings
from schemas.topics import TopicKey, TopicSpec, topic_registry

__all__ = ["ensure_topics"]


def ensure_topics(
    settings: ContractSettings | None = None,
    *,
    timeout_s: float = 30.0,
    log: Callable[[str], None] | None = None,
) -> dict[TopicKey, TopicSpec]:
    """Create missing topics; refuse existing ones whose shape breaks the contract.

    Co-partitioning is what the join relies on, so predictions and rewards with different partition
    counts is an error, not a warning. Idempotent.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    s = settings or ContractSettings()
    registry = topic_registry(s)
    admin = AdminClient(kafka_config(s))
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        err = exc.args[0]
        raise TopicError(
            f"cannot list topics at {s.kafka_bootstrap}: {err}", code=err.name(), description=err.str()
        ) from None
    missing = [spec for spec in registry.values() if spec.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(spec.name, spec.partitions, s.replication_factor, config=spec.config) for spec in missing],
            operation_timeout=timeout_s,
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout_s)
                if log:
                    log(f"created topic {name}")
            except KafkaException as exc:
                err = exc.args[0]
                if err.name() != "TOPIC_ALREADY_EXISTS":  # lost a race with another ensure: fine
                    raise TopicError(
                        f"cannot create {name}: {err.str()}", code=err.name(), description=err.str()
                    ) from None
        # metadata lags creation by a moment; wait until every topic is visible with its partitions
        deadline = time.monotonic() + timeout_s
        while True:
            existing = admin.list_topics(timeout=timeout_s).topics
            if all(spec.name in existing and existing[spec.name].partitions for spec in registry.values()):
                break
            if time.monotonic() > deadline:
                raise TopicError("created topics did not appear in the cluster metadata in time")
            time.sleep(0.1)
    counts = {spec.key: len(existing[spec.name].partitions) for spec in registry.values()}
    if counts[TopicKey.PREDICTIONS] != counts[TopicKey.REWARDS]:
        raise TopicError(
            f"{registry[TopicKey.PREDICTIONS].name} has {counts[TopicKey.PREDICTIONS]} partitions but "
            f"{registry[TopicKey.REWARDS].name} has {counts[TopicKey.REWARDS]}: the join needs them co-partitioned"
        )
    return registry
