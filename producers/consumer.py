"""``EventConsumer``: read typed events back from a topic (e.g. an app reading agent responses).

At-least-once: the offset of an event is stored only when the caller asks for the next one (or
calls :meth:`EventConsumer.commit`), so an event whose processing crashed the app is read again
by the group's next consumer. Bad records never pass as events: they raise a typed
:class:`~schemas.errors.SchemaError`, or go to the ``on_invalid`` callback when one is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from schemas.errors import KafkaError, SchemaError
from schemas.events import Event
from schemas.kafka_config import kafka_config
from schemas.serde import decode
from schemas.settings import ContractSettings
from schemas.topic_reader import PARTITION_EOF
from schemas.topics import TopicKey, topic_name

__all__ = ["Consumed", "EventConsumer", "RecordInfo"]

E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class RecordInfo:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class Consumed(Generic[E]):
    event: E
    record: RecordInfo


class EventConsumer(Generic[E]):
    def __init__(
        self,
        topic: TopicKey | str,
        event_type: type[E],
        *,
        group_id: str,
        settings: ContractSettings | None = None,
        from_beginning: bool = True,
        on_invalid: Callable[[SchemaError, RecordInfo], None] | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Consumer

        self.settings = settings or ContractSettings()
        self.topic = topic_name(topic, self.settings) if isinstance(topic, TopicKey) else topic
        self.event_type = event_type
        self.on_invalid = on_invalid
        self._consumer = Consumer(
            kafka_config(
                self.settings,
                {
                    "group.id": group_id,
                    "auto.offset.reset": "earliest" if from_beginning else "latest",
                    "enable.auto.commit": True,
                    "enable.auto.offset.store": False,  # we store after the caller is done with an event
                    "partition.assignment.strategy": "cooperative-sticky",
                    **(extra_config or {}),
                },
            )
        )
        self._consumer.subscribe([self.topic])
        self._pending: Any = None  # the last message handed out, stored when the next is asked for
        self._idle_since: float | None = None

    def _store_pending(self) -> None:
        if self._pending is not None:
            self._consumer.store_offsets(message=self._pending)
            self._pending = None

    def poll(self, timeout_s: float = 1.0) -> Consumed[E] | None:
        """The next event, or None if none came within ``timeout_s``."""
        self._store_pending()
        msg = self._consumer.poll(timeout_s)
        while msg is not None:
            err = msg.error()
            if err is not None:
                if err.code() == PARTITION_EOF:  # not an error
                    return None
                raise KafkaError(f"consuming {self.topic}: {err.str()}", code=err.name(), description=err.str())
            ts_type, ts = msg.timestamp()
            info = RecordInfo(
                msg.topic() or self.topic, msg.partition() or 0, msg.offset() or 0, msg.key(), ts if ts_type else None
            )
            try:
                event = decode(msg.value(), self.event_type, max_bytes=self.settings.max_event_bytes)
            except SchemaError as exc:
                if self.on_invalid is None:
                    raise
                self.on_invalid(exc, info)
                self._consumer.store_offsets(message=msg)
                msg = self._consumer.poll(timeout_s)
                continue
            self._pending = msg
            return Consumed(event, info)
        return None

    def events(self, *, idle_timeout_s: float | None = None, max_events: int | None = None) -> Iterator[Consumed[E]]:
        """Yield events; stop after ``max_events`` or when none came for ``idle_timeout_s``."""
        count = 0
        while max_events is None or count < max_events:
            item = self.poll(1.0 if idle_timeout_s is None else min(1.0, idle_timeout_s))
            if item is None:
                if idle_timeout_s is not None and self._idle_for(idle_timeout_s):
                    return
                continue
            self._idle_since = None
            count += 1
            yield item
        self._store_pending()

    def _idle_for(self, seconds: float) -> bool:
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        return now - self._idle_since >= seconds

    def __iter__(self) -> Iterator[Consumed[E]]:
        return self.events()

    def commit(self) -> None:
        """Store the last event handed out and commit synchronously."""
        self._store_pending()
        try:
            self._consumer.commit(asynchronous=False)
        except Exception as exc:  # _NO_OFFSET when nothing was consumed: nothing to do
            err = exc.args[0] if exc.args else exc
            if getattr(err, "name", lambda: "")() != "_NO_OFFSET":
                raise KafkaError(f"commit failed: {err}") from None

    def close(self) -> None:
        self._store_pending()
        self._consumer.close()  # commits stored offsets (auto-commit) and leaves the group

    def __enter__(self) -> EventConsumer[E]:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if et is not None:
            self._pending = None  # the app failed on this event: let it be read again
        self.close()
