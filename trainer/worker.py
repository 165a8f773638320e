"""One closed window, from the model's current adapter to a published version (or a dead letter).

Runs on the service's worker thread while the consumer keeps polling (:mod:`trainer.service`), so a
window of any length keeps the trainer in its group. Failure policy (:mod:`trainer.retry`):

* transient failures (S3, Kafka, timeouts) are retried where they happen, with backoff, forever;
* any other failure costs the window one of its ``MC_TRAINER_WINDOW_ATTEMPTS`` attempts; after the last one
  each of its examples goes to ``dead-letters`` (reason ``window_failed``, the last error) and the
  window counts as done: the service commits past it and goes on with the next window;
* a version number held by another writer's files with no manifest (a writer that died) is given
  up and the next number is used, with the same weights (:class:`trainer.store.VersionTaken`).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, MutableMapping
from functools import partial
from typing import TypeVar

from producers.publisher import EventPublisher
from schemas.dead_letter import dead_letter_bytes
from schemas.errors import AdapterError
from schemas.events import AdapterUpdate
from schemas.serde import encode
from schemas.topics import TopicKey, partition_key, topic_name
from trainer.announce import Announcements
from trainer.metrics import TrainerMetrics
from trainer.model import AdapterSlot
from trainer.publish import AdapterPublisher
from trainer.retry import Interrupted, Retrier
from trainer.settings import TrainerSettings
from trainer.store import AdapterStore, VersionTaken
from trainer.train import WindowTrainer
from trainer.versions import PARENT_OFFSET, ModelState, load_state
from trainer.window import Window

__all__ = ["WindowWorker"]

_log = logging.getLogger(__name__)
_MAX_RACES = 3  # windows lost in a row to other writers of the same version before it counts as a failure

T = TypeVar("T")


class WindowWorker:
    def __init__(
        self,
        settings: TrainerSettings,
        slot: AdapterSlot,
        store: AdapterStore,
        view: Announcements,
        events: EventPublisher,
        counters: MutableMapping[str, int],
        halt: threading.Event,
        metrics: TrainerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.slot = slot
        self.trainer = WindowTrainer(settings, slot)
        self.store = store
        self.view = view
        self.events = events
        self.publisher = AdapterPublisher(settings, store, view, events)
        self.counters = counters
        self.metrics = metrics or TrainerMetrics(counters)
        self.retry = Retrier(settings.retry_initial_s, settings.retry_max_s, halt, on_retry=self._retried)
        #: per-model state, rebuilt from S3 and the topic when missing (the service clears it on rebalances)
        self.states: dict[str, ModelState] = {}

    def _retried(self, what: str, exc: BaseException) -> None:
        self.counters["transient_retries"] = self.counters.get("transient_retries", 0) + 1

    def _io(self, what: str, fn: Callable[[], T]) -> T:
        return self.retry(what, fn)

    # -- one window -------------------------------------------------------------------------------

    def process(self, window: Window) -> bool:
        """Publish, skip or dead-letter ``window``; False only when stopped before it was done."""
        error = ""
        for attempt in range(1, self.settings.window_attempts + 1):
            try:
                self.retry(f"{window.model_id}: window", lambda: self._process(window))
                return True
            except Interrupted:
                return False
            except Exception as exc:  # not transient (those were retried): the window's own failure
                self.counters["window_failures"] = self.counters.get("window_failures", 0) + 1
                error = f"{type(exc).__name__}: {exc}"
                _log.exception("%s: window attempt %d failed", window.model_id, attempt)
                self.slot.holds = None  # the slot may hold half-trained weights
                self.states.pop(window.model_id, None)
        try:
            self._dead_letter(window, f"failed {self.settings.window_attempts} attempts; last: {error}")
        except Interrupted:
            return False
        return True

    def _dead_letter(self, window: Window, error: str) -> None:
        _log.error("%s: dead-lettering a window of %d examples: %s", window.model_id, len(window.examples), error)
        topic = topic_name(TopicKey.DEAD_LETTERS, self.settings)
        letters: list[tuple[bytes, bytes]] = []
        for example, record in zip(window.examples, window.records, strict=True):
            key = partition_key(TopicKey.TRAINING_EXAMPLES, example)
            letter = dead_letter_bytes(
                reason="window_failed",
                error=error,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=key,
                value=encode(example),
                producer="trainer",
            )
            letters.append((key, letter))

        def send() -> None:  # all of them again after a failure: a dead letter may repeat, never go missing
            futures = [self.events.publish_raw(topic, key, body) for key, body in letters]
            for future in futures:
                future.result(self.settings.publish_timeout_s)

        self._io("dead-lettering", send)
        self.counters["dead_lettered_windows"] = self.counters.get("dead_lettered_windows", 0) + 1
        self.counters["dead_lettered_examples"] = self.counters.get("dead_lettered_examples", 0) + len(window.examples)

    def _state(self, model_id: str) -> ModelState:
        state = self.states.get(model_id)
        if state is None:
            state = self._io(
                f"{model_id}: state",
                lambda: load_state(
                    model_id,
                    self.store,
                    self.view.latest_at(model_id),
                    self.publisher.announce,
                    horizon=self.settings.trained_ids_horizon,
                ),
            )
            self.states[model_id] = state
        return state

    def _process(self, window: Window) -> None:
        for _ in range(_MAX_RACES):
            if self._attempt(window):
                return
        raise AdapterError(f"{window.model_id}: the version kept being taken by other writers")

    def _attempt(self, window: Window) -> bool:
        """Train the window on the model's current adapter and publish it; False when another writer
        published the version first (the caller trains again on top of it)."""
        model_id = window.model_id
        self._io("reading adapter-updates", self.view.poll)  # a rollback announced meanwhile changes the parent
        state = self._state(model_id)
        keep = [i for i, ex in enumerate(window.examples) if not state.trained(ex.example_id)]
        if len(keep) < len(window.examples):  # re-delivered, or another writer trained them meanwhile
            self.counters["skipped"] += len(window.examples) - len(keep)
            if not keep:
                return True
            window = Window(
                model_id, window.opened_at, [window.examples[i] for i in keep], [window.records[i] for i in keep]
            )
        examples = window.examples
        closed_at, t0 = time.time(), time.perf_counter()
        current_at = self.view.latest_at(model_id)
        current = current_at.update if current_at is not None else None
        self._io(f"{model_id}: parent adapter", lambda: self._load_parent(model_id, current))
        parent_s = time.perf_counter() - t0
        baseline = current.metrics.get("reward_baseline") if current is not None else None
        result = self.trainer.train(examples, baseline)
        if not result.trained:
            self.counters["empty_windows"] += 1
            _log.info("%s: a window of %d examples without assistant tokens: nothing to train", model_id, len(examples))
            return True
        folder = self.settings.work_dir / "out" / model_id
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        self.slot.save(folder)
        # Each part of the window's way to S3, measured on its own (the demo's freshness split).
        metrics = {
            **result.metrics,
            "window_closed_at": closed_at,
            "prepare_s": parent_s + result.metrics.get("batch_s", 0.0),
            "save_s": time.perf_counter() - t0,
            PARENT_OFFSET: float(current_at.offset if current_at is not None else -1),
        }
        parent = current.version if current is not None else 0
        ids = [ex.example_id for ex in examples]
        version = state.next_version(current)
        while True:
            try:
                publish = partial(
                    self.publisher.publish, model_id, version, parent, folder, window.training_window(), ids, metrics
                )
                outcome = self._io(f"{model_id}: publishing v{version}", publish)
            except VersionTaken:
                _log.warning("%s v%d: another writer's files and no manifest: giving the number up", model_id, version)
                self.metrics.version_refused(model_id, "abandoned")
                state.head = max(state.head, version)
                version += 1
                continue
            break
        if outcome is None:  # v{version} was taken by another adapter: start over on top of it
            self.metrics.version_refused(model_id, "taken")
            self.states.pop(model_id, None)
            self.slot.holds = None
            return False
        update, ours = outcome
        shutil.rmtree(folder, ignore_errors=True)  # in S3 now; the slot still holds the weights
        state.head = max(state.head, update.version)
        state.remember(update.version, ids)
        self.slot.holds = (model_id, update.version) if ours else None
        self.counters["windows"] += 1
        self.metrics.published(
            model_id, update.version, examples=len(examples), tokens=result.tokens, seconds=result.seconds
        )
        _log.info(
            "%s v%d published: %d examples, %d tokens in %.1f s, %s",
            model_id,
            update.version,
            len(examples),
            result.tokens,
            result.seconds,
            {k: round(v, 4) for k, v in result.metrics.items()},
        )
        return True

    def _load_parent(self, model_id: str, current: AdapterUpdate | None) -> None:
        version = current.version if current is not None else 0
        if self.slot.holds == (model_id, version):
            return
        if current is None or version == 0:
            self.slot.fresh(model_id)
            return
        folder = self.settings.work_dir / "parent" / model_id  # one per model: overwritten, verified
        self.slot.load(model_id, version, self.store.download(current, folder))
