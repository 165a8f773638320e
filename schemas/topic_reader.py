"""Reading topics from their beginnings with a consumer of one's own: how every part reads ``adapter-updates``.

The compacted ``adapter-updates`` topic is state, not a queue: every reader (each inference node, the
trainer's view of what is current, the gate, ``mc adapters``) reads all of it on every start and
keeps reading. So a :class:`TopicReader` *assigns* every partition at its beginning (no group to
share the topic with: each reader sees every record, broadcast) and never commits. It knows when it
has read each assigned partition up to the end that partition had when it was assigned
(:attr:`TopicReader.caught_up`), from librdkafka's partition-EOF events (:data:`PARTITION_EOF`, the
one name for librdkafka's ``-191``). :func:`read_update` turns one record into an
:class:`AdapterUpdate` or the :class:`~schemas.errors.SchemaError` it is; checking its signature is
the caller's (:func:`schemas.signing.verify_update`), since each part counts refusals its own way.

Errors: a fatal librdkafka error raises :class:`~schemas.errors.KafkaError`; any other error is logged
and counted (librdkafka retries a broker that went away by itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError as _RdKafkaError

from schemas.errors import KafkaError, SchemaError, TopicError
from schemas.events import AdapterUpdate
from schemas.kafka_config import kafka_config
from schemas.serde import DEFAULT_MAX_EVENT_BYTES, decode
from schemas.settings import ContractSettings

__all__ = ["PARTITION_EOF", "TopicReader", "UpdateRecord", "read_update"]

_log = logging.getLogger(__name__)

#: librdkafka's "reached the end of the partition" event code (not an error)
PARTITION_EOF: int = _RdKafkaError._PARTITION_EOF

#: what a partition answers while its leader is being elected (a topic created a moment ago)
_NO_LEADER_YET = (_RdKafkaError.NOT_LEADER_FOR_PARTITION, _RdKafkaError.LEADER_NOT_AVAILABLE)

#: room for the record's key, headers and framing above the largest event
_FETCH_SLACK = 65_536


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    """One record of ``adapter-updates``: the update, or why it is not one."""

    partition: int
    offset: int
    update: AdapterUpdate | None
    error: SchemaError | None = None


def read_update(msg: Any, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> UpdateRecord:
    """The AdapterUpdate in the polled record ``msg`` (not signature-checked), or its SchemaError."""
    try:
        update = decode(msg.value(), AdapterUpdate, max_bytes=max_bytes)
    except SchemaError as exc:
        return UpdateRecord(msg.partition(), msg.offset(), None, exc)
    return UpdateRecord(msg.partition(), msg.offset(), update)


class TopicReader:
    """A group-less consumer that reads the topics it is given from their beginnings, never committing.

    ``group_id`` names the consumer to the broker only (nothing is joined or committed under it).
    ``max_event_bytes`` raises the per-partition fetch size above the largest event.
    """

    def __init__(self, settings: ContractSettings, *, group_id: str, max_event_bytes: int | None = None) -> None:
        from confluent_kafka import Consumer

        config = kafka_config(
            settings,
            {
                "group.id": group_id,  # assign() only: never joins, never commits
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
        if max_event_bytes is not None:
            config["max.partition.fetch.bytes"] = max_event_bytes + _FETCH_SLACK
        self._consumer = Consumer(config)
        #: non-fatal consumer errors seen (logged; librdkafka retries them)
        self.errors = 0
        self.assigned: dict[str, list[int]] = {}
        self._pending: set[tuple[str, int]] = set()

    def assign(self, topic: str, *, timeout_s: float = 30.0) -> None:
        """Read every partition of ``topic`` from its beginning, in addition to what is assigned.

        Raises :class:`~schemas.errors.TopicError` when the topic does not exist (yet).
        """
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        meta = self._consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise TopicError(f"topic {topic} does not exist (run `mc topics ensure`)")
        parts = sorted(meta.partitions)
        deadline = time.monotonic() + timeout_s
        for p in parts:
            low, high = self._watermarks(TopicPartition(topic, p), deadline)
            if high > low:  # an empty partition sends no EOF before its first record
                self._pending.add((topic, p))
        self._consumer.incremental_assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.assigned[topic] = parts

    def _watermarks(self, tp: Any, deadline: float) -> tuple[int, int]:
        """The partition's (low, high) offsets, retrying what a topic created a moment ago answers
        (no leader yet) until ``deadline``."""
        from confluent_kafka import KafkaException

        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=max(0.1, deadline - time.monotonic()))
                return int(low), int(high)
            except KafkaException as exc:
                err = exc.args[0]
                if time.monotonic() >= deadline or not (err.retriable() or err.code() in _NO_LEADER_YET):
                    raise KafkaError(
                        f"reading the offsets of {tp.topic}[{tp.partition}]: {err.str()}",
                        code=err.name(),
                        description=err.str(),
                    ) from None
                time.sleep(0.2)

    @property
    def caught_up(self) -> bool:
        """Every assigned partition has been read up to the end it had when it was assigned."""
        return not self._pending

    def pending(self, topic: str) -> bool:
        """Some partition of ``topic`` has not been read up to that end yet."""
        return any(t == topic for t, _ in self._pending)

    def poll(self, timeout_s: float, *, max_records: int = 500) -> list[Any]:
        """The records that arrived (waiting up to ``timeout_s`` for the first), in partition order."""
        records = []
        for msg in self._consumer.consume(max_records, timeout=timeout_s):
            err = msg.error()
            if err is None:
                records.append(msg)
            elif err.code() == PARTITION_EOF:  # the end as of now
                self._pending.discard((msg.topic(), msg.partition()))
            elif err.fatal():
                raise KafkaError(f"consuming {msg.topic()}: {err.str()}", code=err.name(), description=err.str())
            else:
                self.errors += 1
                _log.error("consuming %s: %s", msg.topic(), err.str())
        return records

    def catch_up(self, apply: Callable[[Any], None], *, timeout_s: float = 30.0) -> None:
        """Read and ``apply`` records until :attr:`caught_up`; :class:`KafkaError` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up:
            if time.monotonic() > deadline:
                late = sorted({t for t, _ in self._pending})
                raise KafkaError(f"{', '.join(late)} not read to its end within {timeout_s} s")
            for msg in self.poll(0.2):
                apply(msg)

    def close(self) -> None:
        self._consumer.close()
