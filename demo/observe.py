"""Which adapter versions went live, and the timestamps of each: the node's /status, the version's
manifest in S3, the closing example's record on training-examples.

Everything here only reads what the parts already publish; nothing in the parts exists for the demo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import httpx

from demo.freshness import Freshness, VersionTimes, split
from inference import NodeClient
from schemas.adapter_store import AdapterStore
from schemas.errors import AdapterError
from schemas.events import AdapterUpdate, TrainingExample
from schemas.kafka_config import kafka_config
from schemas.serde import decode
from schemas.settings import ContractSettings

__all__ = ["LiveVersion", "Observer", "VersionFeed"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveVersion:
    """An adapter version the trainer published, as the loop saw it."""

    version: int
    live_at: float | None  # the node's live_from; None: superseded before this node served it
    examples: int  # the window it was trained on (from its manifest; 0 when unreadable)
    freshness: Freshness | None = None
    note: str | None = None  # why something is missing
    #: when the trainer published it (its AdapterUpdate's ``created_at``); the loop paces on this
    published_at: float | None = None


class VersionFeed(Protocol):
    """Where the loop learns of new versions (blocking; the loop calls it from a thread)."""

    def poll(self) -> list[LiveVersion]:
        """The versions published since the last call, up to the newest live one, oldest first."""
        ...


class Observer:
    """The real feed: the node's /status, then each new version's manifest and closing example."""

    def __init__(self, settings: ContractSettings, model_id: str, node: NodeClient) -> None:
        self.settings = settings
        self.model_id = model_id
        self.node = node
        self.seen = 0
        self._store = AdapterStore(settings)

    def poll(self) -> list[LiveVersion]:
        try:
            status = self.node.status()
        except httpx.HTTPError as exc:  # the loop's health check tells a dead node from a slow one
            _log.warning("node /status: %r", exc)
            return []
        live = status.models.get(self.model_id)
        if live is None or live.version <= self.seen:
            return []
        live_from = {r.version: r.live_from for r in live.history}
        # versions between the last seen and the live one: published, maybe skipped by the node
        # (it serves the newest announcement); their windows were consumed all the same
        out = [
            self._version(v, live_from.get(v), live.load_ms if v == live.version else None)
            for v in range(self.seen + 1, live.version + 1)
        ]
        self.seen = live.version
        return out

    def _version(self, version: int, live_at: float | None, load_ms: float | None) -> LiveVersion:
        try:
            update = self.manifest(version)
        except Exception as exc:  # reported in the row; the run goes on
            return LiveVersion(version, live_at, 0, note=f"manifest unreadable: {exc!r}")
        examples = update.window.example_count
        published = update.created_at.timestamp()
        if live_at is None:
            return LiveVersion(version, None, examples, note="superseded before it went live", published_at=published)
        try:
            example, joined_at = self.closing_example(update)
        except AdapterError as exc:
            return LiveVersion(version, live_at, examples, note=str(exc), published_at=published)
        times = VersionTimes.from_metrics(
            version,
            update.metrics,
            reward_at=example.reward.created_at.timestamp(),
            joined_at=joined_at,
            created_at=update.created_at.timestamp(),
            live_at=live_at,
            vllm_load_ms=load_ms,
        )
        return LiveVersion(version, live_at, examples, split(times), published_at=published)

    def manifest(self, version: int) -> AdapterUpdate:
        """The version's AdapterUpdate, as the trainer wrote it to S3."""
        return self._store.manifest(self.model_id, version)

    def closing_example(self, update: AdapterUpdate) -> tuple[TrainingExample, float]:
        """The window's last example and its record timestamp (unix s).

        A model's examples share one partition (key model_id) and windows close by count, so the
        window's highest offset is the example that closed it.
        """
        from confluent_kafka import Consumer, TopicPartition

        if not update.window.ranges:
            raise AdapterError(f"{self.model_id} v{update.version} names no window")
        last = max(update.window.ranges, key=lambda r: r.last_offset)
        consumer = Consumer(kafka_config(self.settings, {"group.id": "demo-observer", "enable.auto.commit": False}))
        try:
            consumer.assign([TopicPartition(last.topic, last.partition, last.last_offset)])
            for _ in range(40):
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    example = decode(msg.value(), TrainingExample, max_bytes=self.settings.max_event_bytes)
                    return example, msg.timestamp()[1] / 1000.0
        finally:
            consumer.close()
        raise AdapterError(f"could not read {last.topic}[{last.partition}]@{last.last_offset}")
