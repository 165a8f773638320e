"""Freshness: seconds from the reward that closed a window to that window's adapter answering.

Timestamps (unix seconds, one machine's clock) of one adapter version, in the order they happen:

* ``reward_at``: ``created_at`` of the RewardEvent of the window's last example (the one that
  closed it: windows close by count);
* ``joined_at``: the training-examples record's timestamp of that example (the processor's join);
* ``upload_started_at``: S3 ``LastModified`` of the version's first file (``adapter_config.json``);
* ``uploaded_at``: the AdapterUpdate's ``created_at`` (made once every file is in S3);
* ``live_at``: the node's switch time for the version (``/status`` history ``live_from``).

``train_s`` is the trainer's own measure of its optimizer steps on the window (its log). The split:

* join = joined - reward;
* window = upload_started - joined - train: the trainer's poll, closing the window, loading the
  parent adapter, building the batch, and saving the new adapter locally;
* train = train_s;
* upload = uploaded - upload_started (the adapter files and the example ids);
* load = live - uploaded: manifest, announcement on adapter-updates, the node's download, sha256
  check, vLLM load and the alias switch (``load_ms`` is the vLLM load call alone).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Freshness", "VersionTimes", "p50", "split"]


@dataclass(frozen=True, slots=True)
class VersionTimes:
    version: int
    reward_at: float
    joined_at: float
    upload_started_at: float
    uploaded_at: float
    live_at: float
    train_s: float | None = None
    load_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Freshness:
    version: int
    total_s: float
    join_s: float
    window_s: float
    train_s: float
    upload_s: float
    load_s: float
    vllm_load_ms: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "version": self.version,
            "total_s": round(self.total_s, 3),
            "join_s": round(self.join_s, 3),
            "window_s": round(self.window_s, 3),
            "train_s": round(self.train_s, 3),
            "upload_s": round(self.upload_s, 3),
            "load_s": round(self.load_s, 3),
            "vllm_load_ms": None if self.vllm_load_ms is None else round(self.vllm_load_ms, 1),
        }


def split(t: VersionTimes) -> Freshness:
    """The parts of one version's freshness; they add up to ``total_s``.

    Without the trainer's own training time, all of upload_started - joined counts as window.
    """
    train = t.train_s if t.train_s is not None else 0.0
    return Freshness(
        version=t.version,
        total_s=t.live_at - t.reward_at,
        join_s=t.joined_at - t.reward_at,
        window_s=t.upload_started_at - t.joined_at - train,
        train_s=train,
        upload_s=t.uploaded_at - t.upload_started_at,
        load_s=t.live_at - t.uploaded_at,
        vllm_load_ms=t.load_ms,
    )


def p50(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return float(statistics.median(values)) if values else None
