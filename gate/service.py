"""The gate's Kafka side: read adapter-updates and training-examples, announce canaries and verdicts.

On every start the gate reads the compacted ``adapter-updates`` from its beginning (the contract's
:class:`~schemas.topic_reader.TopicReader`: its own consumer, no group, nothing committed), then
every partition of ``training-examples`` from its beginning, so its reward arms are rebuilt from the
durable topics after a crash; only then does it announce anything. Announcements are signed with
``MC_ADAPTER_SIGNING_KEY`` and acknowledged by the broker before the loop goes on; unsigned or
wrongly signed records on ``adapter-updates`` are ignored (as nodes ignore them). Run one gate per
set of topics: two would each start canaries and decide.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any

from gate.core import GateCore
from gate.settings import GateSettings
from producers.publisher import EventPublisher
from schemas.errors import SchemaError, UntrustedAdapterError
from schemas.events import AdapterUpdate, TrainingExample
from schemas.serde import decode
from schemas.signing import sign_update, verify_update
from schemas.topic_reader import TopicReader, read_update
from schemas.topics import TopicKey, topic_name

__all__ = ["GateService", "read_state"]

_log = logging.getLogger(__name__)


class _Reader:
    """One group-less reader: adapter-updates first, to its end; then training-examples too."""

    def __init__(self, settings: GateSettings, core: GateCore, *, examples: bool = True) -> None:
        self.s, self.core = settings, core
        self._key = settings.signing_key()
        self.updates_topic = topic_name(TopicKey.ADAPTER_UPDATES, settings)
        self.examples_topic = topic_name(TopicKey.TRAINING_EXAMPLES, settings)
        self.counters: Counter[str] = Counter()
        self._want_examples = examples
        self._reader = TopicReader(
            settings, group_id=f"mc-gate-{uuid.uuid4().hex}", max_event_bytes=settings.max_event_bytes
        )
        self.caught_up = False

    def catch_up(self, timeout_s: float = 60.0) -> None:
        """Read adapter-updates, then training-examples, up to their ends as of now."""
        steps = [self.updates_topic] + ([self.examples_topic] if self._want_examples else [])
        deadline = time.monotonic() + timeout_s
        for topic in steps:
            self._reader.assign(topic, timeout_s=timeout_s)
            self._reader.catch_up(self._apply, timeout_s=max(0.0, deadline - time.monotonic()))
        self.caught_up = True

    def poll(self, timeout_s: float) -> int:
        """Apply what arrived (waiting up to ``timeout_s`` for the first record); the number applied."""
        msgs = self._reader.poll(timeout_s)
        for msg in msgs:
            self._apply(msg)
        return len(msgs)

    def _apply(self, msg: Any) -> None:
        if msg.topic() == self.updates_topic:
            self._update(msg)
        else:
            self._example(msg)

    def _update(self, msg: Any) -> None:
        record = read_update(msg, max_bytes=self.s.max_event_bytes)
        if record.update is None:
            self.counters["updates_invalid"] += 1
            _log.warning("ignoring a bad record at %s@%d: %s", self.updates_topic, record.offset, record.error)
            return
        try:
            verify_update(record.update, self._key, self.s.s3_bucket)
        except UntrustedAdapterError as exc:
            self.counters["updates_refused"] += 1
            _log.error("ignoring an update at %s@%d: %s", self.updates_topic, record.offset, exc)
            return
        self.counters["updates"] += 1
        self.core.on_update(record.update)

    def _example(self, msg: Any) -> None:
        try:
            example = decode(msg.value(), TrainingExample, max_bytes=self.s.max_event_bytes)
        except SchemaError:
            self.counters["examples_invalid"] += 1  # the processor dead-letters what it could not join
            return
        self.counters["examples"] += 1
        self.core.on_example(example)

    def close(self) -> None:
        self._reader.close()


def read_state(settings: GateSettings, *, examples: bool = True) -> GateCore:
    """The gate's view of the topics right now, without announcing anything (``mc adapters status``)."""
    core = GateCore(settings.params())
    reader = _Reader(settings, core, examples=examples)
    try:
        reader.catch_up()
    finally:
        reader.close()
    return core


class GateService:
    def __init__(self, settings: GateSettings | None = None) -> None:
        self.s = settings or GateSettings()
        self.core = GateCore(self.s.params())
        self._key = self.s.signing_key()  # a gate that cannot sign must not start
        self.announced: Counter[str] = Counter()

    def announce(self, events: EventPublisher, update: AdapterUpdate) -> AdapterUpdate:
        signed = sign_update(update, self._key)
        events.publish(TopicKey.ADAPTER_UPDATES, signed).result(self.s.publish_timeout_s)
        kind = update.decision.outcome if update.decision is not None else update.stage
        self.announced[kind] += 1
        d = update.decision
        if d is None:
            _log.info("%s: v%d is the canary now", update.model_id, update.version)
        else:
            _log.info(
                "%s: %s v%d (live v%d): candidate %s over %d, live %s over %d; %s",
                update.model_id,
                d.outcome,
                d.candidate_version,
                d.live_version,
                d.candidate_mean,
                d.candidate_rewards,
                d.live_mean,
                d.live_rewards,
                d.reason,
            )
        return signed

    def run(self, stop: threading.Event) -> None:
        reader = _Reader(self.s, self.core)
        try:
            with EventPublisher(self.s) as events:
                reader.catch_up()
                _log.info("caught up: %s", dict(reader.counters))
                while not stop.is_set():
                    for update in self.core.due():
                        self.announce(events, update)
                    reader.poll(self.s.gate_poll_s)
        finally:
            reader.close()
