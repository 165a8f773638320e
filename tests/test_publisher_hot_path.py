"""EventPublisher's per-event path against a fake confluent-kafka Producer (no broker needed).

The fake does what librdkafka's binding does with a message's ``on_delivery``: keeps the callable
until the report and calls it as ``on_delivery(err, msg)`` from whichever thread polls.
"""

from __future__ import annotations

import gc
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from producers import Delivery, DeliveryFuture, EventPublisher, ProducerSettings
from schemas import (
    DeliveryError,
    EventTooLargeError,
    Message,
    PredictionEvent,
    PublishError,
    RewardEvent,
    TopicKey,
    TrainingExample,
)
from schemas.topics import KEY_FIELDS, partition_key, topic_name


class _Err:
    """Stands for librdkafka's KafkaError in a delivery report."""

    def name(self) -> str:
        return "MSG_TIMED_OUT"

    def __str__(self) -> str:
        return "Local: Message timed out"


_Err.str = _Err.__str__  # type: ignore[attr-defined]  # librdkafka's error has a .str() method


class FakeProducer:
    """Holds produced messages until ``deliver()``; ``fail`` names keys whose delivery fails."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        # parallel lists, not a tuple per message: the allocation test counts every tracked object
        self.args: tuple[list[Any], ...] = ([], [], [], [], [])
        self.fail: set[bytes | None] = set()
        self.auto_deliver = True  # poll() and flush() deliver what is queued
        self.queue_full_times = 0  # produce() raises BufferError this many times first
        self.offset = 0
        self.polls: list[tuple[float, int]] = []  # (timeout, thread id) of each poll
        self.max_depth = 0  # nesting of poll()/flush() on one thread: librdkafka's binding aborts above 1
        self._depth = threading.local()
        self._lock = threading.Lock()

    def produce(self, topic: str, value: bytes, key: bytes | None, partition: int, on_delivery: Any) -> None:
        if self.queue_full_times:
            self.queue_full_times -= 1
            raise BufferError("Local: Queue full")
        with self._lock:
            for column, arg in zip(self.args, (topic, value, key, partition, on_delivery), strict=True):
                column.append(arg)

    @property
    def queued(self) -> list[tuple[str, bytes, bytes | None, int, Any]]:
        return list(zip(*self.args, strict=True))

    def deliver(self) -> int:
        with self._lock:
            batch, self.args = self.queued, ([], [], [], [], [])
        for topic, _value, key, _partition, on_delivery in batch:
            if key in self.fail:
                on_delivery(_Err(), SimpleNamespace(topic=lambda t=topic: t, key=lambda k=key: k))
            else:
                self.offset += 1
                on_delivery(None, SimpleNamespace(partition=lambda: 1, offset=lambda o=self.offset: o))
        return len(batch)

    def poll(self, timeout: float) -> int:
        self.polls.append((timeout, threading.get_ident()))
        self._enter()
        try:
            if self.auto_deliver and self.args[0]:
                return self.deliver()
            time.sleep(min(timeout, 0.005))
            return 0
        finally:
            self._depth.n -= 1

    def _enter(self) -> None:
        self._depth.n = getattr(self._depth, "n", 0) + 1
        self.max_depth = max(self.max_depth, self._depth.n)

    def flush(self, timeout: float) -> int:
        self._enter()
        try:
            while self.auto_deliver and self.deliver():  # as librdkafka: including what callbacks produce
                pass
            return len(self.queued)
        finally:
            self._depth.n -= 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    import confluent_kafka

    made: list[FakeProducer] = []

    def factory(config: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer(config))
        return made[-1]

    monkeypatch.setattr(confluent_kafka, "Producer", factory)
    return made


def _reward(pid: str = "p1", **kw: Any) -> RewardEvent:
    return RewardEvent(prediction_id=pid, model_id="m", reward=0.5, **kw)


def test_future_is_the_messages_on_delivery_and_resolves(fake: list[FakeProducer]) -> None:
    settings = ProducerSettings(topic_prefix="t.")
    with EventPublisher(settings) as pub:
        producer = fake[0]
        producer.auto_deliver = False
        event = _reward("abc")
        fut = pub.publish_reward(event)
        topic, value, key, partition, on_delivery = producer.queued[0]
        # one object plays both parts; the partitioner (murmur2_random) picks the partition
        assert on_delivery is fut and partition == -1
        assert (topic, key) == ("t.rewards", b"abc") and value == event.model_dump_json().encode()
        assert not fut.done()
        producer.deliver()
        assert fut.done() and fut.result(0) == Delivery("t.rewards", 1, 1)
    assert producer.config["enable.idempotence"] is True and producer.config["acks"] == "all"


def test_one_tracked_allocation_per_publish(fake: list[FakeProducer]) -> None:
    """A bound method or closure per event doubles what the GC must walk while events are in flight."""
    events = [_reward(f"p{i}") for i in range(2000)]
    with EventPublisher(ProducerSettings()) as pub:
        fake[0].auto_deliver = False
        pub.publish_reward(events[0])  # warm up
        gc.collect()
        gc.disable()
        try:
            before = gc.get_count()[0]
            for ev in events:
                pub.publish_reward(ev)
            allocated = gc.get_count()[0] - before
        finally:
            gc.enable()
        fake[0].auto_deliver = True
    assert allocated <= len(events) + 50, allocated


def test_keys_follow_the_contract_for_every_keyed_topic(fake: list[FakeProducer]) -> None:
    pred = PredictionEvent(model_id="m", base_model="b", messages=[Message(role="user", content="hi")])
    reward = RewardEvent(prediction_id=pred.prediction_id, model_id="m", reward=1.0)
    example = TrainingExample.join(pred, reward)
    events = {TopicKey.PREDICTIONS: pred, TopicKey.REWARDS: reward, TopicKey.TRAINING_EXAMPLES: example}
    settings = ProducerSettings()
    with EventPublisher(settings) as pub:
        fake[0].auto_deliver = False
        for topic, ev in events.items():
            pub.publish(topic, ev)
        pub.publish_prediction(pred)
        pub.publish(TopicKey.REWARDS, reward, key=b"explicit")
        pub.publish_raw("elsewhere", None, b"raw")
        got = [(t, k) for t, _v, k, _p, _cb in fake[0].queued]
        fake[0].auto_deliver = True
    assert set(events) | {TopicKey.ADAPTER_UPDATES} == set(KEY_FIELDS)
    assert got == [
        *[(topic_name(t, settings), partition_key(t, ev)) for t, ev in events.items()],
        (topic_name(TopicKey.PREDICTIONS, settings), pred.prediction_id.encode()),
        (topic_name(TopicKey.REWARDS, settings), b"explicit"),
        ("elsewhere", None),
    ]


def test_topic_without_a_key_field_needs_a_key(fake: list[FakeProducer]) -> None:
    with EventPublisher(ProducerSettings()) as pub:
        with pytest.raises(KeyError):
            pub.publish(TopicKey.DEAD_LETTERS, _reward())
        assert pub.publish(TopicKey.DEAD_LETTERS, _reward(), key=b"k").result(5).offset == 1


def test_size_limit_is_typed_and_checked_before_producing(fake: list[FakeProducer]) -> None:
    with EventPublisher(ProducerSettings(max_event_bytes=1024)) as pub:
        with pytest.raises(EventTooLargeError):
            pub.publish_reward(_reward(comment="x" * 2000))
        assert fake[0].queued == [] and fake[0].offset == 0
        assert pub.publish_reward(_reward()).result(5).offset == 1


def test_unawaited_failures_are_raised_by_flush_once(fake: list[FakeProducer]) -> None:
    pub = EventPublisher(ProducerSettings(topic_prefix="t."))
    try:
        fake[0].fail = {b"bad"}
        good, bad = pub.publish_reward(_reward("good")), pub.publish_reward(_reward("bad"))
        with pytest.raises(DeliveryError) as info:
            pub.flush(5)
        assert info.value.code == "_DELIVERY_FAILED"
        assert info.value.failures == [("t.rewards", b"bad", "Local: Message timed out")]
        assert good.result(0).offset == 1
        err = bad.exception(0)
        assert isinstance(err, DeliveryError) and err.code == "MSG_TIMED_OUT"
        pub.flush(5)  # reported once
        pub.publish_reward(_reward("bad"))
        with pytest.raises(DeliveryError):
            pub.close(5)
    finally:
        pub.close(5)
    with pytest.raises(PublishError, match="closed"):
        pub.publish_reward(_reward())


def test_full_queue_waits_then_gives_up(fake: list[FakeProducer]) -> None:
    with EventPublisher(ProducerSettings(queue_full_timeout_s=5)) as pub:
        fake[0].queue_full_times = 3
        assert pub.publish_reward(_reward()).result(5).offset == 1
    with EventPublisher(ProducerSettings(queue_full_timeout_s=0)) as pub:
        fake[1].queue_full_times = 10**6
        with pytest.raises(PublishError) as info:
            pub.publish_reward(_reward())
        assert info.value.code == "_QUEUE_FULL"
        fake[1].queue_full_times = 0


def test_a_future_nobody_holds_still_settles(fake: list[FakeProducer]) -> None:
    seen: list[DeliveryFuture] = []
    with EventPublisher(ProducerSettings()) as pub:
        fake[0].auto_deliver = False
        pub.publish_reward(_reward()).add_done_callback(seen.append)
        assert seen == []
        fake[0].auto_deliver = True
    assert len(seen) == 1 and seen[0].result(0).offset == 1


def test_reports_are_served_between_publishes_on_the_publishing_thread(fake: list[FakeProducer]) -> None:
    with EventPublisher(ProducerSettings()) as pub:
        every = pub._pump.every
        futures = [pub.publish_reward(_reward(f"p{i}")) for i in range(every)]
        inline = [t for t, ident in fake[0].polls if ident == threading.get_ident()]
        assert inline == [0]  # one non-blocking poll after `every` publishes
        assert all(f.done() for f in futures)  # served there, not waiting for the background thread


def test_background_thread_settles_futures_when_the_app_is_not_publishing(fake: list[FakeProducer]) -> None:
    with EventPublisher(ProducerSettings()) as pub:
        fut = pub.publish_reward(_reward())
        assert fut.result(5).offset == 1  # no flush, no further publish
        assert any(ident != threading.get_ident() for _t, ident in fake[0].polls)


def test_callbacks_may_publish_but_never_poll_inside_a_poll(fake: list[FakeProducer]) -> None:
    """confluent-kafka aborts the process on a poll nested in a delivery callback; we skip those."""
    refused: list[BaseException] = []
    with EventPublisher(ProducerSettings()) as pub:
        chained: list[DeliveryFuture] = []

        def again(f: DeliveryFuture) -> None:
            chained.extend(pub.publish_reward(_reward(f"c{i}")) for i in range(pub._pump.every + 1))
            try:
                pub.flush(1)
            except PublishError as exc:
                refused.append(exc)

        fake[0].auto_deliver = False
        pub.publish_reward(_reward()).add_done_callback(again)
        fake[0].auto_deliver = True
        pub.flush(5)  # serves the first report, whose callback publishes more and tries to flush
    assert fake[0].max_depth == 1
    assert len(chained) == pub._pump.every + 1 and all(f.done() for f in chained)  # close() flushed them
    assert [getattr(e, "code", None) for e in refused] == ["_REENTRANT_FLUSH"]
