"""``EventPublisher``: the idempotent confluent-kafka producer apps publish events with.

Guarantees: enable.idempotence + acks=all, so a retried send is never written twice to a partition
and an acknowledged event is on every in-sync replica. Every publish returns a future that resolves
with the record's partition and offset, or fails with :class:`DeliveryError`; failures nobody
awaited are raised by the next ``flush()``/``close()``, so a failed delivery is never silent.
Delivery reports are served between publishes on the publishing thread, or by a background thread
when the app is not publishing (polling.py), so futures settle without the app's help.
Partitioner is ``murmur2_random``, the Java client's, so the stream processor (aiokafka) and any
Java consumer agree with us on which partition a key lives on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from producers.delivery import Delivery, DeliveryFuture
from producers.polling import ReportPump
from producers.settings import ProducerSettings
from schemas.errors import DeliveryError, PublishError
from schemas.events import Event, PredictionEvent, RewardEvent
from schemas.kafka_config import kafka_config
from schemas.serde import encode
from schemas.topics import KEY_FIELDS, TopicKey, partition_key, topic_name

__all__ = ["EventPublisher", "producer_config"]

_log = logging.getLogger(__name__)

_ANY_PARTITION = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the configured partitioner picks one


def _publish_error(topic: str, exc: Exception) -> PublishError:
    err = exc.args[0] if exc.args else exc
    code = err.name() if hasattr(err, "name") else None
    return PublishError(f"cannot publish to {topic}: {err}", code=code)


def producer_config(settings: ProducerSettings, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The librdkafka configuration every producer of this project uses (the benchmark's too)."""
    return kafka_config(
        settings,
        {
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": settings.linger_ms,
            "compression.type": settings.compression,
            "delivery.timeout.ms": settings.delivery_timeout_ms,
            "message.max.bytes": settings.max_event_bytes + 65_536,
            **(extra or {}),
        },
    )


class EventPublisher:
    """Publish contract events to Kafka. Thread-safe; use as a (sync or async) context manager.

    >>> with EventPublisher() as pub:
    ...     pub.publish_reward(reward).result()   # wait for this one
    ...     pub.publish_prediction(prediction)    # or let close() wait for all
    """

    def __init__(
        self, settings: ProducerSettings | None = None, *, extra_config: Mapping[str, Any] | None = None
    ) -> None:
        from confluent_kafka import Producer

        self.settings = settings or ProducerSettings()
        self._producer = Producer(producer_config(self.settings, extra_config))
        self._max_bytes = self.settings.max_event_bytes
        # (topic name, key field) per topic, resolved once: hashing an enum member runs Python code
        self._routes = {key: (topic_name(key, self.settings), KEY_FIELDS.get(key)) for key in TopicKey}
        self._predictions = self._routes[TopicKey.PREDICTIONS]
        self._rewards = self._routes[TopicKey.REWARDS]
        self._failures: list[tuple[str, bytes | None, str]] = []
        self._lock = threading.Lock()
        self._on_failure = self._record_failure  # bound once: futures share it instead of one each
        self._closed = False
        # Delivery callbacks only run inside poll(): the pump serves them between publishes, or on its
        # own thread while the app is not publishing (polling.py).
        self._pump = ReportPump(self._producer)
        self._unserved = 0  # publishes since the last inline poll (a race between threads only shifts it)

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, topic: TopicKey, event: Event, *, key: bytes | None = None) -> DeliveryFuture:
        """Queue ``event`` for ``topic``; the future resolves once the broker acknowledged it."""
        route = self._routes[topic]
        if key is None and route[1] is None:
            key = partition_key(topic, event)  # a topic without a key field: the contract's error
        return self._publish(route, event, key)

    def publish_prediction(self, event: PredictionEvent) -> DeliveryFuture:
        return self._publish(self._predictions, event, None)

    def publish_reward(self, event: RewardEvent) -> DeliveryFuture:
        return self._publish(self._rewards, event, None)

    def _publish(self, route: tuple[str, str | None], event: Event, key: bytes | None) -> DeliveryFuture:
        if self._closed:
            raise PublishError("the publisher is closed")
        value = encode(event, max_bytes=self._max_bytes)  # the one serialisation; raises EventTooLargeError
        if key is None:  # partition_key(), without hashing the topic enum twice more
            key = str(getattr(event, route[1])).encode()  # type: ignore[arg-type]  # publish() checked
        return self._produce(route[0], key, value)

    async def apublish(self, topic: TopicKey, event: Event) -> Delivery:
        """Publish and wait for the acknowledgement without blocking the event loop."""
        return await asyncio.wrap_future(self.publish(topic, event).as_concurrent())

    async def apublish_prediction(self, event: PredictionEvent) -> Delivery:
        return await self.apublish(TopicKey.PREDICTIONS, event)

    async def apublish_reward(self, event: RewardEvent) -> Delivery:
        return await self.apublish(TopicKey.REWARDS, event)

    def publish_raw(self, topic: str, key: bytes | None, value: bytes) -> DeliveryFuture:
        """Publish bytes as they are (dead letters, tests of bad input)."""
        if self._closed:
            raise PublishError("the publisher is closed")
        return self._produce(topic, key, value)

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> DeliveryFuture:
        # The future is also the message's on_delivery callable: one allocation per event (delivery.py).
        future = DeliveryFuture(topic, key, self._on_failure)
        try:
            self._producer.produce(topic, value, key, _ANY_PARTITION, future)
        except BufferError:
            self._produce_when_room(topic, key, value, future)
        except Exception as exc:  # KafkaException: e.g. message too large, unknown topic
            raise _publish_error(topic, exc) from None
        self._unserved += 1
        if self._unserved >= self._pump.every:
            self._unserved = 0
            self._pump.serve_inline()
        return future

    def _produce_when_room(self, topic: str, key: bytes | None, value: bytes, future: DeliveryFuture) -> None:
        """Local queue full: wait for deliveries to drain it, up to queue_full_timeout_s."""
        deadline = time.monotonic() + self.settings.queue_full_timeout_s
        while True:
            self._pump.poll(0.01)
            try:
                self._producer.produce(topic, value, key, _ANY_PARTITION, future)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise PublishError(
                        f"the producer queue stayed full for {self.settings.queue_full_timeout_s} s",
                        code="_QUEUE_FULL",
                    ) from None
            except Exception as exc:
                raise _publish_error(topic, exc) from None

    # -- flushing and closing -----------------------------------------------------------------

    def _record_failure(self, failure: tuple[str, bytes | None, str]) -> None:
        with self._lock:
            self._failures.append(failure)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every queued event; raise :class:`DeliveryError` for any that failed since the last flush."""
        remaining = self._pump.flush(timeout_s)
        with self._lock:
            failures, self._failures[:] = list(self._failures), []
        if remaining:
            raise DeliveryError(
                f"{remaining} event(s) still undelivered after {timeout_s} s", code="_TIMED_OUT", failures=failures
            )
        if failures:
            raise DeliveryError(
                f"{len(failures)} event(s) were not delivered: {failures[0][2]}",
                code="_DELIVERY_FAILED",
                failures=failures,
            )

    def close(self, timeout_s: float = 60.0) -> None:
        """Flush and stop the poll thread. Idempotent; raises like :meth:`flush`."""
        if self._closed:
            return
        try:
            self.flush(timeout_s)
        finally:
            self._closed = True
            self._pump.stop()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if et is None:
            self.close()
        else:  # don't mask the app's exception with ours; still try to deliver what was queued
            try:
                self.close()
            except PublishError as exc:
                _log.error("while handling %s, events were not delivered: %s", et.__name__, exc)

    async def __aenter__(self) -> EventPublisher:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.__exit__, et, ev, tb)
