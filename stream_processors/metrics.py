"""Reward metrics per (model_id, adapter_version): count, mean, EMA, last update.

The table holds one *partial* per (model_id, adapter_version, partition): a key lives in one
partition of a faust table, and the examples of one model come from every partition. Partials
merge exactly, so the web endpoint sums them. The EMA is exponentially weighted by event time
(half-life configurable) rather than by count, because a time-decayed mean merges across
partitions exactly while a per-count EMA depends on an order that no single worker sees.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

__all__ = ["RewardStats", "metrics_key", "parse_metrics_key"]


def metrics_key(model_id: str, adapter_version: int, partition: int) -> str:
    # '#' and '|' cannot occur in a model_id (the contract's Id pattern), so the key splits back.
    return f"{model_id}|{adapter_version}#{partition}"


def parse_metrics_key(key: str) -> tuple[str, int, int]:
    head, _, partition = key.rpartition("#")
    model_id, _, version = head.rpartition("|")
    return model_id, int(version), int(partition)


@dataclass(slots=True)
class RewardStats:
    count: int = 0
    total: float = 0.0
    #: EMA numerator / denominator, weights relative to ``ref_ms`` (the newest event time)
    ema_num: float = 0.0
    ema_den: float = 0.0
    ref_ms: int = 0
    last_update_ms: int = 0

    def _rebase(self, ref_ms: int, half_life_ms: float) -> None:
        if ref_ms > self.ref_ms:
            scale = math.exp2(-(ref_ms - self.ref_ms) / half_life_ms)
            self.ema_num *= scale
            self.ema_den *= scale
            self.ref_ms = ref_ms

    def add(self, reward: float, event_ms: int, half_life_ms: float) -> None:
        if self.count == 0:
            self.ref_ms = event_ms
        self._rebase(event_ms, half_life_ms)
        weight = math.exp2(-(self.ref_ms - event_ms) / half_life_ms)
        self.ema_num += reward * weight
        self.ema_den += weight
        self.count += 1
        self.total += reward
        self.last_update_ms = max(self.last_update_ms, event_ms)

    def copy(self) -> RewardStats:
        return RewardStats(self.count, self.total, self.ema_num, self.ema_den, self.ref_ms, self.last_update_ms)

    def merge(self, other: RewardStats, half_life_ms: float) -> RewardStats:
        if other.count == 0:
            return self.copy()
        if self.count == 0:
            return other.copy()
        a, b = self.copy(), other.copy()
        ref = max(a.ref_ms, b.ref_ms)
        a._rebase(ref, half_life_ms)
        b._rebase(ref, half_life_ms)
        return RewardStats(
            a.count + b.count,
            a.total + b.total,
            a.ema_num + b.ema_num,
            a.ema_den + b.ema_den,
            ref,
            max(a.last_update_ms, b.last_update_ms),
        )

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def ema(self) -> float | None:
        return self.ema_num / self.ema_den if self.ema_den > 0 else None

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "total": self.total,
            "ema_num": self.ema_num,
            "ema_den": self.ema_den,
            "ref_ms": self.ref_ms,
            "last_update_ms": self.last_update_ms,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.as_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RewardStats:
        d = json.loads(data)
        return cls(
            int(d["count"]),
            float(d["total"]),
            float(d["ema_num"]),
            float(d["ema_den"]),
            int(d["ref_ms"]),
            int(d["last_update_ms"]),
        )
