"""Dead letters per reason, counted from the ``dead-letters`` topic itself.

The processors' counters live in memory and start again at zero when a worker restarts; the topic
keeps every dead letter (its retention allowing), so a count read from it survives a worker's restart
and the dashboard's own (a new reader counts from the beginning again). The reader is assigned the
topic's partitions without a consumer group (nothing to commit, no rebalance, invisible to the lag
table) and keeps its position between samples, so each sample reads only what was written since the
last one, and at most ``max_records`` of it: a large backlog is counted over several samples.
"""

from __future__ import annotations

import time
from collections import Counter

from pydantic import ValidationError

from schemas.dead_letter import DeadLetter
from schemas.errors import KafkaError
from schemas.kafka_config import kafka_config
from schemas.settings import ContractSettings

__all__ = ["UNREADABLE", "DeadLetterCounts"]

#: the reason counted for a record that is not a DeadLetter (so the sum still matches the topic)
UNREADABLE = "unreadable_dead_letter"


class DeadLetterCounts:
    """Counts ``reason`` over every record of one topic, incrementally; call :meth:`read` per sample."""

    def __init__(
        self, settings: ContractSettings, topic: str, *, max_records: int = 50_000, budget_s: float = 2.0
    ) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self.max_records, self.budget_s = max_records, budget_s
        self.counts: Counter[str] = Counter()
        #: next offset to count, per partition (None until the topic exists and is assigned)
        self._next: dict[int, int] | None = None
        self._consumer = Consumer(
            kafka_config(
                settings,
                {
                    # required by the client; never used: assign() joins no group and nothing is committed
                    "group.id": "mc-dashboard-dead-letters",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",  # a partition whose start was deleted by retention
                    "log_level": 3,
                },
            )
        )

    def read(self, timeout_s: float = 10.0) -> dict[str, int]:
        """Count what was written since the last call (bounded); returns the counts so far, by reason."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        if self._next is None:
            md = self._consumer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
            if md is None or md.error is not None or not md.partitions:
                return dict(self.counts)  # not created yet: nothing to count
            self._next = dict.fromkeys(md.partitions, 0)
            self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._next])
        ends = {
            p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout_s, cached=False)[1]
            for p in self._next
        }
        deadline = time.monotonic() + self.budget_s
        read = 0
        while read < self.max_records and time.monotonic() < deadline:
            if all(self._next[p] >= end for p, end in ends.items()):
                break
            batch = self._consumer.consume(num_messages=min(1000, self.max_records - read), timeout=0.5)
            if not batch:
                break  # a gap (e.g. a transaction marker) below the end: the rest comes next sample
            for msg in batch:
                err = msg.error()
                if err is not None:  # partition EOF events are off (the default): this is a real error
                    raise KafkaError(f"reading {self.topic}: {err}", code=err.name(), description=err.str())
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None  # a record, not an event
                read += 1
                self._next[partition] = offset + 1
                self.counts[_reason(msg.value())] += 1
        return dict(sorted(self.counts.items()))

    def close(self) -> None:
        self._consumer.close()


def _reason(value: bytes | None) -> str:
    if value is None:
        return UNREADABLE
    try:
        return DeadLetter.model_validate_json(value).reason
    except ValidationError:
        return UNREADABLE
