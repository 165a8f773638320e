"""Consumer lag from Kafka itself: committed offsets, end offsets and message timestamps.

Lag in messages = end offset - committed offset, per group, topic and partition. Lag in seconds = the
age of the oldest message the group has not consumed (the record at the committed offset): how far
behind real time the group is, which is what an operator acts on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from schemas.kafka_config import kafka_config
from schemas.settings import ContractSettings

__all__ = ["LagReader", "LagRow"]


@dataclass(frozen=True, slots=True)
class LagRow:
    group: str
    topic: str
    partition: int
    committed: int
    end: int
    lag_messages: int
    lag_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LagReader:
    """Reads lag for every consumer group (or those whose id starts with ``group_prefix``)."""

    def __init__(self, settings: ContractSettings, *, timeout_s: float = 10.0) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient

        self.timeout_s = timeout_s
        self._admin = AdminClient(kafka_config(settings, {"log_level": 3}))
        # a consumer that never joins a group: used only to read one record's timestamp
        self._peek = Consumer(
            kafka_config(settings, {"group.id": "mc-dashboard-peek", "enable.auto.commit": False, "log_level": 3})
        )

    def groups(self, group_prefix: str = "") -> list[str]:
        result = self._admin.list_consumer_groups(request_timeout=self.timeout_s).result(self.timeout_s)
        return sorted(
            g.group_id
            for g in result.valid
            if g.group_id.startswith(group_prefix) and g.group_id != "mc-dashboard-peek"
        )

    def end_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin._listoffsets import OffsetSpec

        if not partitions:
            return {}
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = self._admin.list_offsets(
            {TopicPartition(t, p): latest for t, p in partitions}, request_timeout=self.timeout_s
        )
        return {(tp.topic, tp.partition): fut.result(self.timeout_s).offset for tp, fut in futures.items()}

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        fut = self._admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout_s
        )[group]
        out = {}
        for tp in fut.result(self.timeout_s).topic_partitions:
            if tp.error is None and tp.offset >= 0:
                out[(tp.topic, tp.partition)] = tp.offset
        return out

    def _timestamp_ms(self, topic: str, partition: int, offset: int) -> int | None:
        from confluent_kafka import TopicPartition

        self._peek.assign([TopicPartition(topic, partition, offset)])
        msg = self._peek.poll(self.timeout_s)
        self._peek.unassign()
        if msg is None or msg.error():
            return None
        ts_type, ts = msg.timestamp()
        return ts if ts_type else None

    def read(self, group_prefix: str = "") -> list[LagRow]:
        committed = {g: self.committed(g) for g in self.groups(group_prefix)}
        ends = self.end_offsets(sorted({tp for c in committed.values() for tp in c}))
        now_ms = time.time() * 1000
        rows = []
        for group, offsets in committed.items():
            for (topic, partition), off in sorted(offsets.items()):
                end = ends.get((topic, partition), off)
                lag = max(0, end - off)
                seconds = 0.0
                if lag:
                    ts = self._timestamp_ms(topic, partition, off)
                    seconds = max(0.0, (now_ms - ts) / 1000) if ts is not None else 0.0
                rows.append(LagRow(group, topic, partition, off, end, lag, round(seconds, 3)))
        return rows

    def topic_end_totals(self, topics: list[str]) -> dict[str, int]:
        """Sum of end offsets per topic (events ever written), for events/s."""
        md = self._admin.list_topics(timeout=self.timeout_s).topics
        parts = [(t, p) for t in topics if t in md for p in md[t].partitions]
        totals: dict[str, int] = dict.fromkeys(topics, 0)
        for (t, _), end in self.end_offsets(parts).items():
            totals[t] += end
        return totals

    def close(self) -> None:
        self._peek.close()
