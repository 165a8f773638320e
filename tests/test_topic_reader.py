"""The one reader of adapter-updates (schemas.topic_reader) against the real broker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from producers.publisher import EventPublisher
from schemas.errors import InvalidEventError, KafkaError, MalformedEventError, TopicError
from schemas.events import AdapterUpdate
from schemas.topic_reader import PARTITION_EOF, TopicReader, UpdateRecord, read_update
from schemas.topics import TopicKey, topic_name


def test_partition_eof_is_librdkafkas_constant() -> None:
    from confluent_kafka import KafkaError as RdKafkaError

    assert PARTITION_EOF == RdKafkaError._PARTITION_EOF == -191


def _update(model_id: str, version: int) -> AdapterUpdate:
    uri = f"s3://b/adapters/{model_id}/v{version}/"
    files = {"adapter_config.json": "0" * 64, "adapter_model.safetensors": "1" * 64}
    return AdapterUpdate(model_id=model_id, version=version, uri=uri, files=files, base_model="base")


def _reader(settings) -> TopicReader:
    return TopicReader(settings, group_id=f"test-{uuid.uuid4().hex}")


@pytest.mark.kafka
def test_reads_from_the_beginning_knows_its_end_and_keeps_reading(topics) -> None:
    settings = topics()
    topic = topic_name(TopicKey.ADAPTER_UPDATES, settings)
    sent = [_update(f"m{i % 3}", i + 1) for i in range(7)]
    with EventPublisher(settings) as pub:
        for update in sent:
            pub.publish(TopicKey.ADAPTER_UPDATES, update).result(30)
        pub.publish_raw(topic, b"m0", b"not json").result(30)
        pub.publish_raw(topic, b"m0", b'{"schema_version": 1, "model_id": "m0"}').result(30)

        for _ in range(2):  # two readers see the same records: no group shares them
            reader = _reader(settings)
            try:
                reader.assign(topic)
                assert not reader.caught_up and reader.pending(topic)
                records: list[UpdateRecord] = []

                def keep(msg: Any, out: list[UpdateRecord] = records) -> None:
                    out.append(read_update(msg))

                reader.catch_up(keep, timeout_s=30)
                assert reader.caught_up and not reader.pending(topic)
                assert sorted(r.update.version for r in records if r.update) == [u.version for u in sent]
                errors = [r.error for r in records if r.update is None]
                assert [type(e) for e in errors] == [MalformedEventError, InvalidEventError]
                assert all(r.offset >= 0 and r.partition in reader.assigned[topic] for r in records)
            finally:
                reader.close()

        reader = _reader(settings)
        try:
            reader.assign(topic)
            reader.catch_up(lambda _msg: None)
            later = _update("m9", 42)
            pub.publish(TopicKey.ADAPTER_UPDATES, later).result(30)
            seen: list[AdapterUpdate] = []
            for _ in range(50):
                seen += [u for m in reader.poll(0.2) if (u := read_update(m).update) is not None]
                if seen:
                    break
            assert seen == [later]
        finally:
            reader.close()


@pytest.mark.kafka
def test_an_empty_topic_is_caught_up_at_once_and_a_missing_one_is_a_topic_error(topics) -> None:
    settings = topics()
    reader = _reader(settings)
    try:
        reader.assign(topic_name(TopicKey.ADAPTER_UPDATES, settings))
        assert reader.caught_up
        reader.catch_up(lambda _msg: pytest.fail("nothing to read"), timeout_s=1)
        with pytest.raises(TopicError, match="does not exist"):
            reader.assign(f"{settings.topic_prefix}no-such-topic", timeout_s=5)
    finally:
        reader.close()


@pytest.mark.kafka
def test_catch_up_gives_up_after_its_timeout(topics) -> None:
    settings = topics()
    topic = topic_name(TopicKey.ADAPTER_UPDATES, settings)
    with EventPublisher(settings) as pub:
        pub.publish(TopicKey.ADAPTER_UPDATES, _update("m", 1)).result(30)
    reader = _reader(settings)
    try:
        reader.assign(topic)
        with pytest.raises(KafkaError, match="not read to its end within 0"):
            reader.catch_up(lambda _msg: None, timeout_s=0)
    finally:
        reader.close()
