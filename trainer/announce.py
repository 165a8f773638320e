"""What the compacted adapter-updates topic says is current, per model.

The topic is the source of truth for "which version serves": rollbacks are announcements too, so
the trainer continues from the latest announced version, whoever announced it. Read with a
group-less assignment from the beginning (nothing is committed: every start re-reads the compacted
topic, which holds about one record per model).

Only signed announcements count (:mod:`schemas.signing`): an update someone else wrote to the topic
must not make the trainer train on top of, or number after, a version no trainer made.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from schemas.errors import KafkaError, SchemaError, UntrustedAdapterError
from schemas.events import AdapterUpdate
from schemas.serde import decode
from schemas.settings import ContractSettings
from schemas.signing import verify_update
from schemas.topics import TopicKey, topic_name

__all__ = ["Announced", "Announcements"]

_log = logging.getLogger(__name__)
_PARTITION_EOF = -191


@dataclass(frozen=True, slots=True)
class Announced:
    update: AdapterUpdate
    partition: int
    offset: int


class Announcements:
    def __init__(self, settings: ContractSettings) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.topic = topic_name(TopicKey.ADAPTER_UPDATES, settings)
        self._key, self._bucket = settings.signing_key(), settings.s3_bucket
        #: announcements ignored because no trainer signed them
        self.refused = 0
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"mc-trainer-view-{uuid.uuid4().hex}",  # never joins or commits: assign() only
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        meta = self._consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaError(f"topic {self.topic} does not exist (run `mc topics ensure`)")
        self._partitions = sorted(meta.partitions)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions])
        self._latest: dict[str, Announced] = {}

    def latest(self, model_id: str) -> AdapterUpdate | None:
        seen = self._latest.get(model_id)
        return seen.update if seen is not None else None

    def latest_at(self, model_id: str) -> Announced | None:
        """The latest announcement of ``model_id`` with where it is on the topic."""
        return self._latest.get(model_id)

    def record(self, update: AdapterUpdate, partition: int, offset: int) -> None:
        """Take an announcement into account (read back, or just published by us).

        The canary's records (issue #14; none exist while it is off) do not move the parent: the gate's
        start of a canary is a copy of a candidate we proposed, and its promotion of an older version
        than we have proposed since leaves us on our newest version. Its refusals are rollbacks, which
        do move the parent back to the live version. So the trainer continues from the newest version
        it published unless the gate or a person rolled back.
        """
        seen = self._latest.get(update.model_id)
        if update.stage == "canary":
            return
        promoted = update.decision is not None and update.decision.outcome == "promote"
        if promoted and seen is not None and update.version < seen.update.version:
            return
        if seen is None or (partition, offset) >= (seen.partition, seen.offset):
            self._latest[update.model_id] = Announced(update, partition, offset)

    def _handle(self, msg: object) -> int | None:
        """Apply one polled message; the partition that reached its end, if it did."""
        err = msg.error()  # type: ignore[attr-defined]
        if err is not None:
            if err.code() == _PARTITION_EOF:
                return int(msg.partition())  # type: ignore[attr-defined]
            raise KafkaError(f"reading {self.topic}: {err.str()}", code=err.name(), description=err.str())
        try:
            update = decode(msg.value(), AdapterUpdate)  # type: ignore[attr-defined]
        except SchemaError as exc:  # not ours to fix; the processor's dead letters are for events in flight
            _log.warning("ignoring a bad record on %s: %s", self.topic, exc)
            return None
        try:
            verify_update(update, self._key, self._bucket)
        except UntrustedAdapterError as exc:
            self.refused += 1
            _log.error("ignoring an announcement on %s@%d: %s", self.topic, msg.offset(), exc)  # type: ignore[attr-defined]
            return None
        self.record(update, msg.partition(), msg.offset())  # type: ignore[attr-defined]
        return None

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Read until every partition reached its end (at start-up: the whole compacted topic)."""
        from confluent_kafka import TopicPartition

        pending = set()
        for p in self._partitions:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout_s)
            position = self._consumer.position([TopicPartition(self.topic, p)])[0].offset
            if high > max(low, position):
                pending.add(p)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise KafkaError(f"{self.topic} not read to its end within {timeout_s} s")
            msg = self._consumer.poll(0.2)
            if msg is not None:
                done = self._handle(msg)
                if done is not None:
                    pending.discard(done)

    def poll(self) -> None:
        """Take whatever new announcements are there, without waiting."""
        while (msg := self._consumer.poll(0)) is not None:
            self._handle(msg)

    def close(self) -> None:
        self._consumer.close()
