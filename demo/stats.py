"""The statistics of live traffic: mean reward with a 95% interval, the rise and its interval.

The unit is the prompt: every prompt of the live stream is new and answered once, so the rewards of
one version are independent draws of that version's reward on the task. Intervals use the normal
approximation with the sample variance (n - 1); below two samples there is no interval (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Z95", "Rise", "Score", "after_versions", "rise", "score"]

#: the two-sided 95% quantile of the normal distribution
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Score:
    n: int
    mean: float | None
    var: float | None  # sample variance (n - 1); None below two samples

    @property
    def half_width(self) -> float | None:
        """Half the width of the 95% interval of the mean."""
        if self.var is None:
            return None
        return Z95 * math.sqrt(self.var / self.n)


def score(rewards: Sequence[float]) -> Score:
    n = len(rewards)
    if n == 0:
        return Score(0, None, None)
    mean = sum(rewards) / n
    var = sum((r - mean) ** 2 for r in rewards) / (n - 1) if n > 1 else None
    return Score(n, mean, var)


@dataclass(frozen=True, slots=True)
class Rise:
    rise: float | None
    ci_low: float | None
    ci_high: float | None


def rise(before: Score, after: Score) -> Rise:
    """after - before, with the 95% interval of a difference of two independent means
    (Welch's standard error: each side's own sample variance)."""
    if before.mean is None or after.mean is None:
        return Rise(None, None, None)
    diff = after.mean - before.mean
    if before.var is None or after.var is None:
        return Rise(diff, None, None)
    half = Z95 * math.sqrt(before.var / before.n + after.var / after.n)
    return Rise(diff, diff - half, diff + half)


def after_versions(samples: Mapping[int, int], min_samples: int) -> list[int]:
    """The versions whose live traffic is 'after': from the newest backwards until together they
    answered at least ``min_samples`` prompts (all of them when there are fewer).

    ``samples`` maps version -> prompts it answered. Version 0 (the base model, 'before') is never
    pooled into 'after', nor are versions without traffic. Returned oldest first.
    """
    picked: list[int] = []
    total = 0
    for version in sorted((v for v, n in samples.items() if v > 0 and n > 0), reverse=True):
        picked.append(version)
        total += samples[version]
        if total >= min_samples:
            break
    return sorted(picked)
