"""Every topic a worker needs, created and visible in the cluster metadata before faust starts.

Left to itself, faust declares its internal topics while the worker starts: each table's changelog
in ``Table.on_start`` (``TableManager._update_channels``), the leader topic in
``LeaderAssignor.on_start``, and the consumer subscribes right after. On a fresh broker the
metadata could lag the creation: the assignor then logged ``Ignoring missing topic``, the consumer's
metadata snapshot held 0 partitions for a changelog, and the first table write of the join agent
raised ``PartitionsMismatch`` (source 6, changelog 0) again and again: ~40 s of crashes, the first
reward joined after 55.8 s (likely until the conductor resubscribed, which it does 45 s after a
subscription change, ``Conductor._resubscribe_sleep_lock_seconds``, and a rebalance took a new snapshot).

So :func:`ensure_worker_topics` runs before the worker: it creates what is missing, shaped as faust
would make it (names, partition counts and configs read from the app's own topic objects), and
waits until every partition of every topic has a leader and the group coordinator answers. faust's
own declaration then finds the topics and skips them. Nothing here changes what the join does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from schemas.errors import TopicError
from schemas.kafka_config import kafka_config
from schemas.topics import TopicKey, topic_name
from stream_processors.settings import ProcessorSettings

__all__ = ["NeededTopic", "ensure_source_topics", "ensure_worker_topics", "faust_topic_config", "worker_topics"]

log = logging.getLogger(__name__)

#: the contract topics the worker reads (co-partitioned) and writes (any partition count)
_SOURCES = (TopicKey.PREDICTIONS, TopicKey.REWARDS)
_SINKS = (TopicKey.TRAINING_EXAMPLES, TopicKey.DEAD_LETTERS)


@dataclass(frozen=True)
class NeededTopic:
    name: str
    partitions: int
    replicas: int
    config: dict[str, str] = field(default_factory=dict)
    #: faust's (changelog, leader) rather than the contract's (created by ``ensure_topics``)
    internal: bool = True


def ensure_source_topics(settings: ProcessorSettings, *, timeout_s: float = 30.0) -> int:
    """Create the contract's missing topics (``mc topics ensure``) and return the partition count of
    predictions, which rewards share (``ensure_topics`` refuses them otherwise)."""
    from confluent_kafka.admin import AdminClient

    from producers.admin import ensure_topics

    ensure_topics(settings, timeout_s=timeout_s, log=log.info)
    topics = AdminClient(kafka_config(settings)).list_topics(timeout=timeout_s).topics
    return len(topics[topic_name(TopicKey.PREDICTIONS, settings)].partitions)


def worker_topics(app: Any, settings: ProcessorSettings, partitions: int) -> list[NeededTopic]:
    """The topics a worker of ``app`` uses, each as faust would declare it (``Topic.declare``)."""
    needed = [  # partitions 0: any count
        NeededTopic(
            topic_name(k, settings), partitions if k in _SOURCES else 0, settings.replication_factor, internal=False
        )
        for k in (*_SOURCES, *_SINKS)
    ]
    faust_topics = [table.changelog_topic for table in app.tables.values()]
    if not app.conf.topic_disable_leader:
        faust_topics.append(app._leader_assignor._leader_topic)  # declared by LeaderAssignor.on_start
    for topic in faust_topics:
        for name in topic.topics:
            needed.append(
                NeededTopic(
                    name,
                    topic.partitions or app.conf.topic_partitions,
                    topic.replicas or app.conf.topic_replication_factor or 1,
                    faust_topic_config(topic),
                )
            )
    return needed


def faust_topic_config(topic: Any) -> dict[str, str]:
    """The configs faust's aiokafka transport gives a topic it creates (``Transport._topic_config``
    plus the topic's own ``config``): a table's changelog gets ``cleanup.policy=compact``."""
    from mode.utils.times import want_seconds

    flags = {flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on}
    config: dict[str, str] = {}
    if flags:
        config["cleanup.policy"] = ",".join(sorted(flags))
    if topic.retention:
        config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000.0))
    config.update({k: str(v) for k, v in (topic.config or {}).items()})
    return config


def ensure_worker_topics(app: Any, settings: ProcessorSettings, partitions: int, *, timeout_s: float = 60.0) -> None:
    """Create the worker's missing topics, refuse a changelog with the wrong partition count, and wait
    until the metadata shows every partition of every topic with a leader and the consumer group's
    coordinator answers (on a fresh broker that is when ``__consumer_offsets`` exists)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    needed = worker_topics(app, settings, partitions)
    admin = AdminClient(kafka_config(settings))
    existing = admin.list_topics(timeout=timeout_s).topics
    for t in needed:
        md = existing.get(t.name)
        if md is not None and md.error is None and t.partitions and len(md.partitions) != t.partitions:
            raise TopicError(
                f"{t.name} has {len(md.partitions)} partitions but the worker needs {t.partitions} (co-partitioned "
                "with predictions and rewards): delete it or use another MC_PROCESSOR_APP_ID"
            )
    missing = [t for t in needed if t.name not in existing]
    if any(not t.internal for t in missing):
        names = [t.name for t in missing if not t.internal]
        raise TopicError(f"topics {names} do not exist: run `mc topics ensure` with the same MC_TOPIC_PREFIX")
    if missing:
        futures = admin.create_topics(
            [NewTopic(t.name, t.partitions, t.replicas, config=t.config) for t in missing],
            operation_timeout=timeout_s,
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout_s)
                log.info("created topic %s", name)
            except KafkaException as exc:
                err = exc.args[0]
                if err.name() != "TOPIC_ALREADY_EXISTS":  # another worker of the app won the race: fine
                    raise TopicError(
                        f"cannot create {name}: {err.str()}", code=err.name(), description=err.str()
                    ) from None
    _wait_for_metadata(admin, needed, timeout_s)
    _wait_for_coordinator(admin, app.conf.id, timeout_s)


def _wait_for_metadata(admin: Any, needed: list[NeededTopic], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        not_ready = [t.name for t in needed if not _visible(topics.get(t.name), t.partitions)]
        if not not_ready:
            return
        if time.monotonic() > deadline:
            raise TopicError(f"topics {not_ready} did not show all their partitions in the metadata in time")
        time.sleep(0.1)


def _visible(md: Any, partitions: int) -> bool:
    """The topic is in the metadata with every partition (``partitions``; 0: any) led by a broker."""
    parts = md.partitions if md is not None and md.error is None else {}
    if not parts or (partitions and len(parts) != partitions):
        return False
    return all(p.leader >= 0 and p.error is None for p in parts.values())


def _wait_for_coordinator(admin: Any, group_id: str, timeout_s: float) -> None:
    """Describe the group until its coordinator answers: on a fresh broker the first FindCoordinator
    creates ``__consumer_offsets``, and until it is loaded aiokafka logs ``GroupCoordinatorNotAvailable``
    errors. (Not ``list_consumer_group_offsets``: librdkafka can segfault on its NOT_COORDINATOR
    answer, confluent-kafka-python#1982 / librdkafka#5040, and did here on a fresh broker.)"""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.describe_consumer_groups([group_id], request_timeout=5)[group_id].result(timeout_s)
            return
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise TopicError(f"the group coordinator for {group_id!r} did not answer: {exc}") from None
            time.sleep(0.2)
