"""Freshness: seconds from the reward that closed a window to that window's adapter serving.

Each part is measured on its own; nothing is a remainder. For one adapter version (unix seconds of
one machine's clock):

* join    = training-examples record timestamp of the window's closing example (the processor's
            send) - that reward's ``created_at``;
* wait    = ``metrics.window_closed_at`` (the trainer took the closed window) - joined. With
            generation overlapping training, this is mostly the previous window still training;
* prepare = ``metrics.prepare_s``: parent adapter load, tokenising, batch building;
* train   = ``metrics.train_s``: the optimizer steps;
* save    = ``metrics.save_s``: adapter and optimizer state saved locally;
* upload  = ``metrics.upload_s``: the files to S3, before the manifest;
* load    = the node's ``live_from`` for the version (``/status`` history) - the AdapterUpdate's
            ``created_at`` (built after the upload): manifest, announcement, the node's download,
            sha256 check, vLLM load and alias switch.

``unaccounted_s`` = total - the sum of the parts: the trainer's bookkeeping between its measured
steps, and any clock or measurement error. It is reported, not hidden, and a test bounds it. A
manifest from a trainer that does not write a part leaves that part (and ``unaccounted_s``) ``None``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["METRIC_KEYS", "PARTS", "Freshness", "VersionTimes", "adds_up", "p50", "part_medians", "split"]

#: the parts, in the order they happen
PARTS = ("join_s", "wait_s", "prepare_s", "train_s", "save_s", "upload_s", "load_s")
#: the manifest metrics the split reads (durations in seconds, ``window_closed_at`` unix seconds)
METRIC_KEYS = ("window_closed_at", "prepare_s", "train_s", "save_s", "upload_s")


@dataclass(frozen=True, slots=True)
class VersionTimes:
    version: int
    reward_at: float  # RewardEvent.created_at of the window's closing example
    joined_at: float  # its training-examples record timestamp
    created_at: float  # AdapterUpdate.created_at
    live_at: float  # the node's live_from for the version
    window_closed_at: float | None = None
    prepare_s: float | None = None
    train_s: float | None = None
    save_s: float | None = None
    upload_s: float | None = None
    vllm_load_ms: float | None = None

    @classmethod
    def from_metrics(
        cls,
        version: int,
        metrics: Mapping[str, float],
        *,
        reward_at: float,
        joined_at: float,
        created_at: float,
        live_at: float,
        vllm_load_ms: float | None = None,
    ) -> VersionTimes:
        """The times of a version from its manifest's metrics; a missing key stays ``None``."""
        return cls(
            version,
            reward_at,
            joined_at,
            created_at,
            live_at,
            **{key: metrics.get(key) for key in METRIC_KEYS},
            vllm_load_ms=vllm_load_ms,
        )


@dataclass(frozen=True, slots=True)
class Freshness:
    version: int
    total_s: float
    join_s: float
    wait_s: float | None
    prepare_s: float | None
    train_s: float | None
    save_s: float | None
    upload_s: float | None
    load_s: float
    unaccounted_s: float | None  # None when a part is unknown
    vllm_load_ms: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {"version": self.version, "total_s": round(self.total_s, 3)}
        for name in (*PARTS, "unaccounted_s"):
            value = getattr(self, name)
            out[name] = None if value is None else round(value, 3)
        out["vllm_load_ms"] = None if self.vllm_load_ms is None else round(self.vllm_load_ms, 1)
        return out


def split(t: VersionTimes) -> Freshness:
    """Each part of one version's freshness, measured on its own, and what they leave unexplained."""
    wait = None if t.window_closed_at is None else t.window_closed_at - t.joined_at
    parts: dict[str, float | None] = {
        "join_s": t.joined_at - t.reward_at,
        "wait_s": wait,
        "prepare_s": t.prepare_s,
        "train_s": t.train_s,
        "save_s": t.save_s,
        "upload_s": t.upload_s,
        "load_s": t.live_at - t.created_at,
    }
    total = t.live_at - t.reward_at
    known = [v for v in parts.values() if v is not None]
    unaccounted = total - sum(known) if len(known) == len(parts) else None
    return Freshness(
        version=t.version,
        total_s=total,
        join_s=t.joined_at - t.reward_at,
        wait_s=wait,
        prepare_s=t.prepare_s,
        train_s=t.train_s,
        save_s=t.save_s,
        upload_s=t.upload_s,
        load_s=t.live_at - t.created_at,
        unaccounted_s=unaccounted,
        vllm_load_ms=t.vllm_load_ms,
    )


def adds_up(f: Freshness, abs_s: float = 1.0, rel: float = 0.05) -> bool:
    """Whether the parts explain the total: |unaccounted| within ``abs_s`` or ``rel`` of the total.
    False when a part is unknown: an unmeasured part is not 'explained'."""
    if f.unaccounted_s is None:
        return False
    return abs(f.unaccounted_s) <= max(abs_s, rel * abs(f.total_s))


def p50(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return float(statistics.median(values)) if values else None


def part_medians(fs: Sequence[Freshness]) -> dict[str, float | None]:
    """The median of the total and of each part over versions (a part's median over the versions
    that measured it)."""
    out: dict[str, float | None] = {}
    for name in ("total_s", *PARTS, "unaccounted_s"):
        value = p50([v for f in fs if (v := getattr(f, name)) is not None])
        out[name] = None if value is None else round(value, 3)
    return out
