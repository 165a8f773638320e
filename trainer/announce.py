"""What the compacted adapter-updates topic says is current, per model.

The topic is the source of truth for "which version serves": rollbacks are announcements too, so
the trainer continues from the latest announced version, whoever announced it. Read with the
contract's :class:`~schemas.topic_reader.TopicReader` (a group-less assignment from the beginning;
nothing is committed: every start re-reads the compacted topic, which holds about one record per model).

Only signed announcements count (:mod:`schemas.signing`): an update someone else wrote to the topic
must not make the trainer train on top of, or number after, a version no trainer made.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from schemas.errors import UntrustedAdapterError
from schemas.events import AdapterUpdate
from schemas.settings import ContractSettings
from schemas.signing import verify_update
from schemas.topic_reader import TopicReader, read_update
from schemas.topics import TopicKey, topic_name

__all__ = ["Announced", "Announcements"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Announced:
    update: AdapterUpdate
    partition: int
    offset: int


class Announcements:
    def __init__(self, settings: ContractSettings) -> None:
        self.topic = topic_name(TopicKey.ADAPTER_UPDATES, settings)
        self._key, self._bucket = settings.signing_key(), settings.s3_bucket
        self._max_bytes = settings.max_event_bytes
        #: announcements ignored because no trainer signed them
        self.refused = 0
        self._reader = TopicReader(settings, group_id=f"mc-trainer-view-{uuid.uuid4().hex}")
        try:
            self._reader.assign(self.topic)
        except BaseException:
            self._reader.close()
            raise
        self._latest: dict[str, Announced] = {}

    def latest(self, model_id: str) -> AdapterUpdate | None:
        seen = self._latest.get(model_id)
        return seen.update if seen is not None else None

    def latest_at(self, model_id: str) -> Announced | None:
        """The latest announcement of ``model_id`` with where it is on the topic."""
        return self._latest.get(model_id)

    def record(self, update: AdapterUpdate, partition: int, offset: int) -> None:
        """Take an announcement into account (read back, or just published by us).

        The canary's records (issue #14; none exist while it is off) do not move the parent: the gate's
        start of a canary is a copy of a candidate we proposed, and its promotion of an older version
        than we have proposed since leaves us on our newest version. Its refusals are rollbacks, which
        do move the parent back to the live version. So the trainer continues from the newest version
        it published unless the gate or a person rolled back.
        """
        seen = self._latest.get(update.model_id)
        if update.stage == "canary":
            return
        promoted = update.decision is not None and update.decision.outcome == "promote"
        if promoted and seen is not None and update.version < seen.update.version:
            return
        if seen is None or (partition, offset) >= (seen.partition, seen.offset):
            self._latest[update.model_id] = Announced(update, partition, offset)

    def _handle(self, msg: Any) -> None:
        """Apply one polled record."""
        record = read_update(msg, max_bytes=self._max_bytes)
        if record.update is None:  # not ours to fix; the processor's dead letters are for events in flight
            _log.warning("ignoring a bad record on %s: %s", self.topic, record.error)
            return
        try:
            verify_update(record.update, self._key, self._bucket)
        except UntrustedAdapterError as exc:
            self.refused += 1
            _log.error("ignoring an announcement on %s@%d: %s", self.topic, record.offset, exc)
            return
        self.record(record.update, record.partition, record.offset)

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Read until every partition reached its end (at start-up: the whole compacted topic)."""
        self._reader.catch_up(self._handle, timeout_s=timeout_s)

    def poll(self) -> None:
        """Take whatever new announcements are there, without waiting."""
        while records := self._reader.poll(0):
            for msg in records:
                self._handle(msg)

    def close(self) -> None:
        self._reader.close()
