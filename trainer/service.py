"""The consume loop: training-examples → windows → train → publish → commit.

Offsets are committed by hand, only below the first record of any window not yet published (or
dead-lettered), so everything not durable is read again after a crash; examples whose id a
published version was trained on are skipped when read again. On a rebalance, open windows of
revoked partitions are dropped (their new owner re-reads them) and per-model state is rebuilt from
S3 and the topic.

Windows are trained on a worker thread (:mod:`trainer.worker`), one at a time. Meanwhile the
consumer's partitions are paused and this thread keeps calling ``poll()``, which serves the group's
heartbeats, rebalances and ``max.poll.interval.ms``: a window of any length keeps the trainer in its
group. Only this thread touches the consumer, the open windows and the offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from producers.publisher import EventPublisher
from producers.settings import ProducerSettings
from schemas.dead_letter import dead_letter_bytes
from schemas.errors import ConfigurationError, KafkaError, SchemaError
from schemas.events import TrainingExample
from schemas.kafka_config import kafka_config
from schemas.serde import decode
from schemas.topic_reader import PARTITION_EOF
from schemas.topics import TopicKey, topic_name
from trainer.announce import Announcements
from trainer.cpus import pin_threads, set_mmap_threshold
from trainer.metrics import SERVICE_COUNTERS, TrainerMetrics
from trainer.model import AdapterSlot, choose_device, load_base
from trainer.settings import TrainerSettings
from trainer.store import AdapterStore
from trainer.window import OffsetTracker, Record, Window, Windows
from trainer.worker import WindowWorker

__all__ = ["TrainerService", "build_slot"]

_log = logging.getLogger(__name__)
_COMMIT_EVERY_S = 2.0


def build_slot(settings: TrainerSettings) -> AdapterSlot:
    """Load the base model once (the slot then serves every model_id)."""
    if settings.base_model_path is None:
        raise ConfigurationError("MC_TRAINER_BASE_MODEL_PATH is not set (a Hugging Face causal-LM folder)")
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
        self.store = AdapterStore(settings)
        self.view = Announcements(settings)
        producer_fields = {k: v for k, v in settings.model_dump().items() if k in ProducerSettings.model_fields}
        self.events = EventPublisher(ProducerSettings(**producer_fields))
        self.windows = Windows(settings.window_examples, settings.window_seconds)
        self.offsets = OffsetTracker()
        self.topic = topic_name(TopicKey.TRAINING_EXAMPLES, settings)
        self.counters = dict.fromkeys(SERVICE_COUNTERS, 0)
        #: set when the service stops: a worker waiting to retry gives up (its window is re-read later)
        self._halt = threading.Event()
        #: the Prometheus registry of this service (``mc trainer`` serves it, MC_TRAINER_METRICS_PORT)
        self.metrics = TrainerMetrics(self.counters)
        self.worker = WindowWorker(
            settings, self.slot, self.store, self.view, self.events, self.counters, self._halt, self.metrics
        )
        self._consumer = Consumer(
            kafka_config(
                settings,
                {
                    "group.id": settings.group_id,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,  # commits are ours: only below unpublished windows
                    "enable.partition.eof": False,
                    "session.timeout.ms": settings.session_timeout_ms,
                    "max.poll.interval.ms": settings.max_poll_interval_ms,
                    **({"group.instance.id": settings.group_instance_id} if settings.group_instance_id else {}),
                },
            )
        )
        self._consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self._last_commit = 0.0
        #: closed windows waiting for the worker, oldest first
        self._ready: deque[Window] = deque()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-trainer-window")
        self._job: Future[bool] | None = None
        #: records of the window being trained/published: not committable until it is done
        self._inflight: list[Record] = []
        self._paused: list[Any] = []
        self._closed = False
        self.worker.retry("reading adapter-updates", self.view.catch_up)

    # -- rebalances -------------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.worker.states.clear()  # another owner may have published versions meanwhile

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._commit(force=True)
        self._on_lost(consumer, partitions)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        for window in self.windows.drop(tps):
            _log.info(
                "dropping the open window of %s (%d examples): partition revoked", window.model_id, len(window.examples)
            )
        gone = set(tps)
        self._ready = deque(w for w in self._ready if not any(r.tp in gone for r in w.records))
        self.offsets.forget(tps)
        self.worker.states.clear()

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
        self._halt.clear()
        try:
            while stop is None or not stop.is_set():
                msg = self._consumer.poll(0.2 if self._job is not None else 0.5)
                if msg is not None:
                    self._handle(msg)
                self._ready.extend(self.windows.due())
                self._reap()
                if self._job is None and self._ready:
                    self._start(self._ready.popleft())
                elif self._job is not None:
                    self._pause()
                if msg is not None or len(self.windows) or self._ready or self._job is not None:
                    idle_since = time.monotonic()  # measured after the work, which can take a while
                self._commit()
                published = self.counters["windows"] - published_at_start
                if max_windows is not None and self._job is None and published >= max_windows:
                    break
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
        finally:
            self._halt.set()
            try:
                if self._job is not None:
                    self._job.exception()  # wait: the worker gives up retrying, training finishes
                    self._reap()
            finally:
                self.close()
        return self.counters["windows"] - published_at_start

    # -- the worker -------------------------------------------------------------------------------

    def _start(self, window: Window) -> None:
        self._inflight = list(window.records)
        self._job = self._executor.submit(self.worker.process, window)
        self._pause()

    def _pause(self) -> None:
        """Stop fetching while a window trains (poll() still keeps the group membership alive)."""
        assigned = self._consumer.assignment()
        if assigned != self._paused:
            self._consumer.pause(assigned)
            self._paused = assigned

    def _reap(self) -> None:
        """Take the worker's result if it is done: commit past its window, fetch again."""
        if self._job is None or not self._job.done():
            return
        job, self._job = self._job, None
        if self._paused:
            self._consumer.resume(self._consumer.assignment())
            self._paused = []
        if job.result():  # an unexpected failure of the worker itself raises here and stops the service
            self._inflight = []  # only when done: after an interruption, close() must not commit past it
            self._commit(force=True)

    def _handle(self, msg: Any) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == PARTITION_EOF:
                return
            if err.fatal():
                raise KafkaError(f"consuming {self.topic}: {err.str()}", code=err.name(), description=err.str())
            self.counters["kafka_errors"] += 1  # librdkafka retries these itself (a broker away, ...)
            _log.warning("consuming %s: %s", self.topic, err.str())
            return
        record = Record(msg.topic(), msg.partition(), msg.offset())
        self.offsets.seen(record)
        try:
            example = decode(msg.value(), TrainingExample, max_bytes=self.settings.max_event_bytes)
        except SchemaError as exc:
            self.counters["invalid"] += 1
            _log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
            letter = dead_letter_bytes(
                reason=exc.reason,
                error=str(exc),
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=msg.key(),
                value=msg.value(),
                producer="trainer",
            )
            self.events.publish_raw(topic_name(TopicKey.DEAD_LETTERS, self.settings), msg.key(), letter)
            return
        self.counters["examples"] += 1
        # Examples a published version was trained on are skipped by the worker, which owns the
        # model's state (S3 reads never block the poll loop); windows depend only on the read order.
        if self.windows.contains(example.model_id, example.example_id):
            self.counters["skipped"] += 1
            return
        full = self.windows.add(example, record)
        if full is not None:
            self._ready.append(full)

    def _commit(self, *, force: bool = False) -> bool:
        """Commit what is durable; False when the commit failed (the next call tries again)."""
        from confluent_kafka import TopicPartition

        if not force and time.monotonic() - self._last_commit < _COMMIT_EVERY_S:
            return True
        offsets = self.offsets.committable([*self.windows.records(), *self._inflight])
        self._last_commit = time.monotonic()
        if not offsets:
            return True
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
            )
        except Exception as exc:  # a broker away, or a commit lost to a rebalance (the next owner re-reads)
            self.counters["kafka_errors"] += 1
            _log.warning("commit failed: %s", exc)
            return False
        self.offsets.committed(offsets)
        return True

    def _commit_at_exit(self) -> None:
        """The last commit, retried with backoff for up to MC_TRAINER_PUBLISH_TIMEOUT_S (a broker restarting)."""
        deadline = time.monotonic() + self.settings.publish_timeout_s
        delay = self.settings.retry_initial_s
        while not self._commit(force=True) and time.monotonic() + delay < deadline:
            self.counters["transient_retries"] += 1
            time.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max_s)

    def close(self) -> None:
        """Commit what is durable and leave the group; open windows are re-read by the next owner."""
        if self._closed:
            return
        self._closed = True
        try:
            self._commit_at_exit()
        finally:
            self._executor.shutdown(wait=True)
            self._consumer.close()
            self.view.close()
            self.events.close()
