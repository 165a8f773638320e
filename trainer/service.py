"""The consume loop: training-examples → windows → train → publish → commit.

Offsets are committed by hand, only below the first record of any window not yet published, so
everything not durable is read again after a crash; examples whose id a published version was
trained on are skipped when read again. On a rebalance, open windows of revoked partitions are
dropped (their new owner re-reads them) and per-model state is rebuilt from S3 and the topic.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import Any

from producers.publisher import EventPublisher
from producers.settings import ProducerSettings
from schemas.dead_letter import DeadLetter
from schemas.errors import AdapterError, ConfigurationError, KafkaError, SchemaError
from schemas.events import AdapterUpdate, TrainingExample
from schemas.serde import decode
from schemas.topics import TopicKey, topic_name
from trainer.announce import Announcements
from trainer.cpus import pin_threads, set_mmap_threshold
from trainer.model import AdapterSlot, choose_device, load_base
from trainer.publish import AdapterPublisher
from trainer.settings import TrainerSettings
from trainer.store import AdapterStore
from trainer.train import WindowTrainer
from trainer.versions import ModelState, load_state
from trainer.window import OffsetTracker, Record, Window, Windows

__all__ = ["TrainerService", "build_slot"]

_log = logging.getLogger(__name__)
_PARTITION_EOF = -191
_COMMIT_EVERY_S = 2.0
_MAX_ATTEMPTS = 3


def build_slot(settings: TrainerSettings) -> AdapterSlot:
    """Load the base model once (the slot then serves every model_id)."""
    if settings.base_model_path is None:
        raise ConfigurationError("MC_BASE_MODEL_PATH is not set (a Hugging Face causal-LM folder)")
    device = choose_device(settings.device)
    if device.type == "cpu":
        pin_threads(settings.cpus)
        set_mmap_threshold(settings.mmap_threshold)
    base, tokenizer = load_base(settings.base_model_path, device)
    return AdapterSlot(base, tokenizer, settings, device)


class TrainerService:
    def __init__(self, settings: TrainerSettings, *, slot: AdapterSlot | None = None) -> None:
        from confluent_kafka import Consumer

        self.settings = settings
        self.slot = slot or build_slot(settings)
        self.trainer = WindowTrainer(settings, self.slot)
        self.store = AdapterStore(settings)
        self.view = Announcements(settings)
        producer_fields = {k: v for k, v in settings.model_dump().items() if k in ProducerSettings.model_fields}
        self.events = EventPublisher(ProducerSettings(**producer_fields))
        self.publisher = AdapterPublisher(settings, self.store, self.view, self.events)
        self.windows = Windows(settings.window_examples, settings.window_seconds)
        self.offsets = OffsetTracker()
        self.states: dict[str, ModelState] = {}
        self.topic = topic_name(TopicKey.TRAINING_EXAMPLES, settings)
        self.counters = {"examples": 0, "skipped": 0, "invalid": 0, "windows": 0, "empty_windows": 0}
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": settings.group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,  # commits are ours: only below unpublished windows
                "enable.partition.eof": False,
                "session.timeout.ms": settings.session_timeout_ms,
                **({"group.instance.id": settings.group_instance_id} if settings.group_instance_id else {}),
            }
        )
        self._consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self._last_commit = 0.0
        #: records of the window being trained/published: not committable until it is published
        self._inflight: list[Record] = []
        self._closed = False
        self.view.catch_up()

    # -- rebalances -------------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.states.clear()  # another owner may have published versions meanwhile

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._commit(force=True)
        self._on_lost(consumer, partitions)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        for window in self.windows.drop(tps):
            _log.info(
                "dropping the open window of %s (%d examples): partition revoked", window.model_id, len(window.examples)
            )
        self.offsets.forget(tps)
        self.states.clear()

    # -- the loop ---------------------------------------------------------------------------------

    def run(
        self,
        *,
        max_windows: int | None = None,
        idle_exit_s: float | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Consume until ``stop`` is set, ``max_windows`` windows were published, or nothing came
        for ``idle_exit_s`` with no window open. Returns the number of windows published."""
        published_at_start = self.counters["windows"]
        idle_since = time.monotonic()
        try:
            while stop is None or not stop.is_set():
                msg = self._consumer.poll(0.5)
                if msg is not None:
                    self._handle(msg)
                for window in self.windows.due():
                    self._process_window(window)
                if msg is not None or len(self.windows):
                    idle_since = time.monotonic()  # measured after the work, which can take a while
                self._commit()
                if max_windows is not None and self.counters["windows"] - published_at_start >= max_windows:
                    break
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
        finally:
            self.close()
        return self.counters["windows"] - published_at_start

    def _handle(self, msg: Any) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == _PARTITION_EOF:
                return
            raise KafkaError(f"consuming {self.topic}: {err.str()}", code=err.name(), description=err.str())
        record = Record(msg.topic(), msg.partition(), msg.offset())
        self.offsets.seen(record)
        try:
            example = decode(msg.value(), TrainingExample, max_bytes=self.settings.max_event_bytes)
        except SchemaError as exc:
            self.counters["invalid"] += 1
            _log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
            letter = DeadLetter(
                reason=exc.reason,
                error=str(exc)[:8192],
                source_topic=record.topic,
                source_partition=record.partition,
                source_offset=record.offset,
                key_b64=DeadLetter.b64(msg.key()),
                value_b64=DeadLetter.b64(msg.value()),
                producer="trainer",
            )
            self.events.publish_raw(
                topic_name(TopicKey.DEAD_LETTERS, self.settings), msg.key(), letter.model_dump_json().encode()
            )
            return
        self.counters["examples"] += 1
        state = self._state(example.model_id)
        if example.example_id in state.trained or self.windows.contains(example.model_id, example.example_id):
            self.counters["skipped"] += 1
            return
        full = self.windows.add(example, record)
        if full is not None:
            self._process_window(full)

    def _state(self, model_id: str) -> ModelState:
        state = self.states.get(model_id)
        if state is None:
            state = load_state(model_id, self.store, self.view.latest(model_id), self.publisher.announce)
            self.states[model_id] = state
        return state

    def _process_window(self, window: Window) -> None:
        self._inflight = list(window.records)
        self._process(window)
        self._inflight = []  # only on success: after a failure, close() must not commit past it
        self._commit(force=True)

    def _process(self, window: Window, attempt: int = 1) -> None:
        """Train the window on the model's current adapter and publish the result."""
        model_id = window.model_id
        self.view.poll()  # a rollback announced meanwhile changes the parent
        state = self._state(model_id)
        keep = [i for i, ex in enumerate(window.examples) if ex.example_id not in state.trained]
        if not keep:
            return
        if len(keep) < len(window.examples):  # another writer trained some of them meanwhile
            window = Window(
                model_id, window.opened_at, [window.examples[i] for i in keep], [window.records[i] for i in keep]
            )
        examples = window.examples
        closed_at, t0 = time.time(), time.perf_counter()
        current = self.view.latest(model_id)
        self._load_parent(model_id, current)
        parent_s = time.perf_counter() - t0
        baseline = current.metrics.get("reward_baseline") if current is not None else None
        result = self.trainer.train(examples, baseline)
        if not result.trained:
            self.counters["empty_windows"] += 1
            _log.info("%s: a window of %d examples without assistant tokens: nothing to train", model_id, len(examples))
            return
        version = state.next_version(current)
        folder = self.settings.work_dir / "out" / model_id / f"v{version}"
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        self.slot.save(folder)
        # Each part of the window's way to S3, measured on its own (the demo's freshness split).
        metrics = {
            **result.metrics,
            "window_closed_at": closed_at,
            "prepare_s": parent_s + result.metrics.get("batch_s", 0.0),
            "save_s": time.perf_counter() - t0,
        }
        parent = current.version if current is not None else 0
        ids = [ex.example_id for ex in examples]
        outcome = self.publisher.publish(model_id, version, parent, folder, window.training_window(), ids, metrics)
        if outcome is None:  # v{version} was taken by another adapter: start over on top of it
            self.states.pop(model_id, None)
            if attempt >= _MAX_ATTEMPTS:
                raise AdapterError(f"{model_id}: v{version} kept being taken by other writers")
            self._process(window, attempt + 1)
            return
        update, ours = outcome
        shutil.rmtree(folder, ignore_errors=True)  # in S3 now; the slot still holds the weights
        state.head = max(state.head, update.version)
        state.trained.update(ids)
        self.slot.holds = (model_id, update.version) if ours else None
        self.counters["windows"] += 1
        _log.info(
            "%s v%d published: %d examples, %d tokens in %.1f s, %s",
            model_id,
            update.version,
            len(examples),
            result.tokens,
            result.seconds,
            {k: round(v, 4) for k, v in result.metrics.items()},
        )

    def _load_parent(self, model_id: str, current: AdapterUpdate | None) -> None:
        version = current.version if current is not None else 0
        if self.slot.holds == (model_id, version):
            return
        if current is None or version == 0:
            self.slot.fresh(model_id)
            return
        folder = self.settings.work_dir / "parent" / model_id  # one per model: overwritten, verified
        self.slot.load(model_id, version, self.store.download(current, folder))

    def _commit(self, *, force: bool = False) -> None:
        from confluent_kafka import TopicPartition

        if not force and time.monotonic() - self._last_commit < _COMMIT_EVERY_S:
            return
        offsets = self.offsets.committable([*self.windows.records(), *self._inflight])
        self._last_commit = time.monotonic()
        if not offsets:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
            )
        except Exception as exc:  # a commit lost to a rebalance is redone by the next owner's re-read
            _log.warning("commit failed: %s", exc)
            return
        self.offsets.committed(offsets)

    def close(self) -> None:
        """Commit what is durable and leave the group; open windows are re-read by the next owner."""
        if self._closed:
            return
        self._closed = True
        try:
            self._commit(force=True)
        finally:
            self._consumer.close()
            self.view.close()
            self.events.close()
