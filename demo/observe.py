"""Where the demo reads its timestamps: Kafka records, S3 objects, the node's /status, the trainer's log.

Everything here only reads what the parts already publish; nothing in the parts exists for the demo.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from demo.freshness import VersionTimes
from inference import NodeStatus
from schemas.errors import AdapterError
from schemas.events import AdapterUpdate, TrainingExample
from schemas.serde import decode
from schemas.settings import ContractSettings
from schemas.storage import ADAPTER_FILES, MANIFEST_FILE, adapter_prefix, s3_client

__all__ = ["Observer", "train_seconds"]

#: the trainer's log line for a published version: "<model> vN published: E examples, T tokens in S s"
_PUBLISHED = re.compile(r"(?P<model>\S+) v(?P<version>\d+) published: \d+ examples, \d+ tokens in (?P<s>[\d.]+) s")


def train_seconds(log_text: str, model_id: str) -> dict[int, float]:
    """Version -> the trainer's training seconds, from its log (empty when the format is unknown)."""
    out: dict[int, float] = {}
    for match in _PUBLISHED.finditer(log_text):
        if match.group("model") == model_id:
            out[int(match.group("version"))] = float(match.group("s"))
    return out


class Observer:
    def __init__(self, settings: ContractSettings, model_id: str, trainer_log: Path) -> None:
        self.settings = settings
        self.model_id = model_id
        self.trainer_log = trainer_log
        self._s3: Any = s3_client(settings)

    def manifest(self, version: int) -> tuple[AdapterUpdate, dict[str, float]]:
        """The version's AdapterUpdate (its manifest) and each object's LastModified (unix s)."""
        prefix = adapter_prefix(self.model_id, version)
        page = self._s3.list_objects_v2(Bucket=self.settings.s3_bucket, Prefix=prefix)
        modified = {obj["Key"][len(prefix) :]: obj["LastModified"].timestamp() for obj in page.get("Contents", [])}
        body = self._s3.get_object(Bucket=self.settings.s3_bucket, Key=prefix + MANIFEST_FILE)["Body"].read()
        return decode(body, AdapterUpdate), modified

    def closing_example(self, update: AdapterUpdate) -> tuple[TrainingExample, float]:
        """The window's last example and its record timestamp (unix s).

        Windows are per model and the model's examples share one partition (key model_id), so
        the window's highest offset is the example that closed it.
        """
        from confluent_kafka import Consumer, TopicPartition

        if not update.window.ranges:
            raise AdapterError(f"{self.model_id} v{update.version} names no window")
        last = max(update.window.ranges, key=lambda r: r.last_offset)
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": "demo-observer",
                "enable.auto.commit": False,
            }
        )
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

    def version_times(self, version: int, status: NodeStatus) -> VersionTimes:
        update, modified = self.manifest(version)
        example, joined_at = self.closing_example(update)
        live = status.models.get(self.model_id)
        live_at = None
        if live is not None:
            live_at = next((r.live_from for r in live.history if r.version == version), None)
        if live_at is None:
            raise AdapterError(f"{self.model_id} v{version} never went live on the node")
        load_ms = live.load_ms if live is not None and live.version == version else None
        train_s = update.metrics.get("train_s")  # the trainer's own figure, from the manifest
        if train_s is None:  # an adapter published by an older trainer: fall back to its log line
            try:
                train_s = train_seconds(self.trainer_log.read_text(errors="replace"), self.model_id).get(version)
            except OSError:
                train_s = None
        return VersionTimes(
            version=version,
            reward_at=example.reward.created_at.timestamp(),
            joined_at=joined_at,
            upload_started_at=modified.get(ADAPTER_FILES[0], update.created_at.timestamp()),
            uploaded_at=update.created_at.timestamp(),
            live_at=live_at,
            train_s=train_s,
            load_ms=load_ms,
        )
