"""The trainer under failures, on the real stack: an S3 outage during the upload, a window that
cannot train, training longer than ``max.poll.interval.ms``, and two writers racing for a version.

The base model is loaded once for the module; each test has its own topics, bucket and group.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack import Stack, StackSettings
from devstack.checkpoint import ensure_checkpoint
from producers.publisher import EventPublisher
from schemas.events import AdapterUpdate, TrainingExample, TrainingWindow
from schemas.storage import ADAPTER_FILES, MANIFEST_FILE, adapter_prefix, s3_client
from schemas.topics import TopicKey, topic_name
from tests.test_trainer_fixtures import example, patiently

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.slow]

torch = pytest.importorskip("torch")

WINDOW = 4
LORA: dict[str, Any] = {"lora_rank": 4, "target_modules": ["q_proj", "v_proj"], "max_seq_len": 64}


@pytest.fixture(scope="module")
def slot(s3: StackSettings) -> Any:
    from trainer.service import build_slot
    from trainer.settings import TrainerSettings

    return build_slot(TrainerSettings(base_model_path=ensure_checkpoint(s3.cache_dir), **LORA))


@pytest.fixture
def make_settings(topics, bucket, group_id, s3, tmp_path) -> Callable[..., Any]:
    from trainer.settings import TrainerSettings

    def make(**overrides: Any) -> Any:
        producer = topics()
        return TrainerSettings(
            topic_prefix=producer.topic_prefix,
            s3_bucket=bucket,
            base_model_path=ensure_checkpoint(s3.cache_dir),
            group_id=group_id(),
            work_dir=tmp_path / uuid.uuid4().hex[:6],
            window_examples=WINDOW,
            window_seconds=600,
            retry_initial_s=0.2,
            retry_max_s=2.0,
            **LORA,
            **overrides,
        )

    return make


def _publish(settings: Any, examples: list[TrainingExample]) -> None:
    from producers.settings import ProducerSettings

    with EventPublisher(ProducerSettings(topic_prefix=settings.topic_prefix)) as pub:
        for ex in examples:
            pub.publish(TopicKey.TRAINING_EXAMPLES, ex)


def _manifest(settings: Any, model_id: str, version: int) -> AdapterUpdate:
    client = s3_client(settings)
    key = adapter_prefix(model_id, version) + MANIFEST_FILE
    return AdapterUpdate.model_validate_json(client.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read())


def _verified(settings: Any, update: AdapterUpdate) -> list[str]:
    """Check every file of the version against its manifest; the example ids it was trained on."""
    client = s3_client(settings)
    prefix = adapter_prefix(update.model_id, update.version)
    for name in ADAPTER_FILES:
        blob = client.get_object(Bucket=settings.s3_bucket, Key=prefix + name)["Body"].read()
        assert hashlib.sha256(blob).hexdigest() == update.files[name], f"v{update.version}/{name}"
    ids = client.get_object(Bucket=settings.s3_bucket, Key=prefix + "examples.json")["Body"].read()
    return [str(i) for i in json.loads(ids)]


def _assert_all_committed(settings: Any) -> None:
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.group_id})
    try:
        topic = topic_name(TopicKey.TRAINING_EXAMPLES, settings)
        parts = [TopicPartition(topic, p) for p in probe.list_topics(topic, timeout=10).topics[topic].partitions]
        for tp in patiently(lambda: probe.committed(parts, timeout=10)):
            high = patiently(lambda tp=tp: probe.get_watermark_offsets(tp, timeout=10))[1]
            assert high == 0 or tp.offset == high, f"partition {tp.partition}: committed {tp.offset} of {high}"
    finally:
        probe.close()


def _dead_letters(settings: Any, n: int) -> list[Any]:
    from confluent_kafka import Consumer

    from schemas.dead_letter import DeadLetter

    reader = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"dl-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([topic_name(TopicKey.DEAD_LETTERS, settings)])
    letters: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(letters) < n and time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is not None and not msg.error():
                letters.append(DeadLetter.model_validate_json(msg.value() or b""))
    finally:
        reader.close()
    return letters


def test_an_s3_outage_during_the_upload_is_retried_and_loses_nothing(make_settings, slot, model_id) -> None:
    from trainer.service import TrainerService

    settings = make_settings()
    mid = model_id()
    examples = [example(mid, i) for i in range(2 * WINDOW)]
    _publish(settings, examples)
    service = TrainerService(settings, slot=slot)
    upload = service.store.upload_files
    outages: list[float] = []

    def upload_during_an_outage(*args: Any, **kwargs: Any) -> Any:
        if not outages:  # the first upload: MinIO goes away now and comes back a few seconds later
            stack = Stack()
            stack.down(["s3"], log=lambda _m: None)
            outages.append(time.monotonic())

            def restore() -> None:
                time.sleep(4)
                stack.up(["s3"], log=lambda _m: None)

            threading.Thread(target=restore, daemon=True).start()
        return upload(*args, **kwargs)

    service.store.upload_files = upload_during_an_outage  # type: ignore[method-assign]
    try:
        published = service.run(max_windows=2, idle_exit_s=60)
    finally:
        Stack().up(["s3"], log=lambda _m: None)  # whatever happened, MinIO is back for the others
    assert outages and published == 2, service.counters
    assert service.counters["transient_retries"] >= 1, service.counters
    assert service.counters["dead_lettered_windows"] == 0, service.counters
    v1, v2 = _manifest(settings, mid, 1), _manifest(settings, mid, 2)
    assert (v1.parent_version, v2.parent_version) == (0, 1)
    trained = _verified(settings, v1) + _verified(settings, v2)
    assert sorted(trained) == sorted(ex.example_id for ex in examples), "an example was lost or trained twice"
    _assert_all_committed(settings)


def test_a_window_that_cannot_train_is_dead_lettered_and_the_next_one_publishes(make_settings, slot, model_id) -> None:
    from schemas.serde import decode
    from trainer.service import TrainerService

    settings = make_settings(window_attempts=3)
    mid = model_id()
    poison = [example(mid, i) for i in range(WINDOW)]
    good = [example(mid, i) for i in range(WINDOW, 2 * WINDOW)]
    _publish(settings, poison + good)
    service = TrainerService(settings, slot=slot)
    train = service.worker.trainer.train
    poisoned = {ex.example_id for ex in poison}
    calls: list[int] = []

    def train_or_fail(examples: Any, baseline: Any) -> Any:  # failure injected by the test, not a setting
        calls.append(len(examples))
        if any(ex.example_id in poisoned for ex in examples):
            raise RuntimeError("injected: this window cannot train")
        return train(examples, baseline)

    service.worker.trainer.train = train_or_fail  # type: ignore[method-assign]
    assert service.run(max_windows=1, idle_exit_s=60) == 1, service.counters
    counters = service.counters
    assert calls == [WINDOW] * 4, calls  # 3 attempts at the poison window, then the good one
    assert (counters["window_failures"], counters["dead_lettered_windows"]) == (3, 1), counters
    assert counters["dead_lettered_examples"] == WINDOW, counters

    letters = _dead_letters(settings, WINDOW)
    assert len(letters) == WINDOW
    assert {(d.reason, d.producer) for d in letters} == {("window_failed", "trainer")}
    assert all("injected: this window cannot train" in d.error for d in letters)
    assert {d.source_offset for d in letters} == set(range(WINDOW))  # the poison window's records
    assert {decode(d.value or b"", TrainingExample).example_id for d in letters} == poisoned

    v1 = _manifest(settings, mid, 1)
    assert v1.parent_version == 0 and sorted(_verified(settings, v1)) == sorted(ex.example_id for ex in good)
    _assert_all_committed(settings)  # committed past the dead-lettered window: no restart reads it again


def test_training_longer_than_the_poll_interval_keeps_the_trainer_in_its_group(make_settings, slot, model_id) -> None:
    from trainer.service import TrainerService

    # librdkafka needs max.poll.interval.ms >= session.timeout.ms; the broker's minimum session is 6 s
    settings = make_settings(session_timeout_ms=6000, max_poll_interval_ms=6000)
    mid = model_id()
    examples = [example(mid, i) for i in range(2 * WINDOW)]
    _publish(settings, examples)
    service = TrainerService(settings, slot=slot)
    train = service.worker.trainer.train
    trained: list[float] = []

    def slow_train(window: Any, baseline: Any) -> Any:  # a window that trains for 10 s > 6 s
        started = time.monotonic()
        time.sleep(10)
        result = train(window, baseline)
        trained.append(time.monotonic() - started)
        return result

    class MemberIds:
        """The consumer, recording its group member id at every poll (on the polling thread)."""

        def __init__(self, consumer: Any) -> None:
            self.consumer, self.seen = consumer, list[str]()

        def poll(self, timeout: float) -> Any:
            msg = self.consumer.poll(timeout)
            member = self.consumer.memberid()
            if member and (not self.seen or self.seen[-1] != member):
                self.seen.append(member)
            return msg

        def __getattr__(self, name: str) -> Any:
            return getattr(self.consumer, name)

    service.worker.trainer.train = slow_train  # type: ignore[method-assign,assignment]
    members = MemberIds(service._consumer)
    service._consumer = members  # type: ignore[assignment]
    assert service.run(max_windows=2, idle_exit_s=60) == 2, service.counters
    assert len(trained) == 2 and min(trained) > 6, trained
    assert len(members.seen) == 1, members.seen  # never left the group (a rejoin gets a new member id)
    v1, v2 = _manifest(settings, mid, 1), _manifest(settings, mid, 2)
    assert sorted(_verified(settings, v1) + _verified(settings, v2)) == sorted(ex.example_id for ex in examples)
    _assert_all_committed(settings)


def _writer(settings: Any) -> Any:
    from producers.settings import ProducerSettings
    from trainer.announce import Announcements
    from trainer.publish import AdapterPublisher
    from trainer.retry import Retrier
    from trainer.store import AdapterStore

    producer_fields = {k: v for k, v in settings.model_dump().items() if k in ProducerSettings.model_fields}
    view = Announcements(settings)
    Retrier(0.2, 2.0)("reading adapter-updates", view.catch_up)  # the broker may be restarting (chaos runs)
    return AdapterPublisher(settings, AdapterStore(settings), view, EventPublisher(ProducerSettings(**producer_fields)))


def _close(writer: Any) -> None:
    writer.view.close()
    writer.events.close()


def _window(offset: int) -> TrainingWindow:
    from schemas.events import OffsetRange

    return TrainingWindow(
        ranges=[OffsetRange(topic="t", partition=0, first_offset=offset, last_offset=offset + 3)], example_count=4
    )


def test_two_writers_racing_for_one_version_exactly_one_wins(make_settings, model_id, tmp_path) -> None:
    import os

    settings = make_settings(claim_wait_s=30)
    mid = model_id()
    writers = [_writer(settings), _writer(settings)]
    folders = []
    for i in range(2):
        folder = tmp_path / f"writer{i}"
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"writer": i}))
        (folder / "adapter_model.safetensors").write_bytes(os.urandom(64 * 1024))
        folders.append(folder)
    # both look for v1's manifest before either uploads: the race the conditional writes must decide
    barrier = threading.Barrier(2)
    for w in writers:
        look = w.store.manifest_or_none

        def after_both_looked(model: str, version: int, look: Any = look, seen: list[int] = []) -> Any:  # noqa: B006
            found = look(model, version)
            if not seen:
                seen.append(1)
                barrier.wait(30)
            return found

        w.store.manifest_or_none = after_both_looked
    results: list[Any] = ["not run", "not run"]

    def go(i: int) -> None:
        try:
            results[i] = writers[i].publish(mid, 1, 0, folders[i], _window(10 * i), [f"ex-{i}"], {"loss": 1.0})
        except Exception as exc:
            results[i] = exc

    try:
        threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    finally:
        for w in writers:
            _close(w)
    winners = [i for i, r in enumerate(results) if isinstance(r, tuple)]
    assert len(winners) == 1 and results[1 - winners[0]] is None, results  # the loser: retrain on top
    win = winners[0]
    update, ours = results[win]
    assert ours and update.window == _window(10 * win)
    stored = _manifest(settings, mid, 1)
    assert stored == update
    assert _verified(settings, stored) == [f"ex-{win}"]
    client = s3_client(settings)
    blob = client.get_object(Bucket=settings.s3_bucket, Key=adapter_prefix(mid, 1) + "adapter_model.safetensors")
    assert blob["Body"].read() == (folders[win] / "adapter_model.safetensors").read_bytes()


def test_the_loser_of_a_race_retrains_on_top_of_the_winner(make_settings, slot, model_id, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    from trainer.service import TrainerService

    settings = make_settings()
    mid = model_id()
    examples = [example(mid, i) for i in range(WINDOW)]
    _publish(settings, examples)
    service = TrainerService(settings, slot=slot)
    upload = service.store.upload_files
    rival: list[AdapterUpdate] = []

    def rival_first(model: str, version: int, folder: Path, ids: list[str]) -> Any:
        if not rival:  # another owner (a rebalance) publishes v1 between our look and our upload
            other = tmp_path / "rival"
            other.mkdir()
            (other / "adapter_config.json").write_bytes((folder / "adapter_config.json").read_bytes())
            weights = load_file(folder / "adapter_model.safetensors")
            save_file({k: v + 0.01 for k, v in weights.items()}, other / "adapter_model.safetensors")
            writer = _writer(settings)
            try:
                rival.append(writer.publish(model, version, 0, other, _window(1000), ["rival-example"], {})[0])
            finally:
                _close(writer)
        return upload(model, version, folder, ids)

    service.store.upload_files = rival_first  # type: ignore[method-assign,assignment]
    assert service.run(max_windows=1, idle_exit_s=60) == 1, service.counters
    v1, v2 = _manifest(settings, mid, 1), _manifest(settings, mid, 2)
    assert v1 == rival[0] and _verified(settings, v1) == ["rival-example"]  # the winner's files, untouched
    assert v2.parent_version == 1  # ours, trained again on top of the winner
    assert sorted(_verified(settings, v2)) == sorted(ex.example_id for ex in examples)
    _assert_all_committed(settings)
