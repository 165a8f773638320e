"""The gate's sequential test, pure: reward statistics in, a verdict (or "keep collecting") out.

The question: is the candidate's mean reward worse than the live version's by more than a margin
``delta``? With d = mean(candidate) - mean(live), the gate tests against the boundary -delta from both
sides:

- **promote** when the lower confidence bound of d is above -delta (not worse by more than the margin);
- **refuse** when the upper confidence bound of d is below -delta (worse by more than the margin);
- **inconclusive** (the live version stays) when the candidate has ``max_rewards`` rewards and
  neither happened.

It is a *group-sequential* test: it looks at the data only when the candidate's reward count reaches
a multiple of ``check_every`` (and both arms have ``min_rewards``), at most K = max_rewards //
check_every times. Each look is a one-sided Welch z-interval at level alpha / K (Bonferroni over the
looks), so, under the normal approximation of the two means, the chance that *any* look decides wrongly
(promotes a candidate worse than -delta, or refuses one better than -delta) is at most alpha = 1 -
confidence, however early it decides. Sample variances are floored at ``var_floor`` so that a short
run of identical rewards (all 0, all 1) does not pretend to be certain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

__all__ = ["GateParams", "RewardStats", "Verdict", "decide", "look_index"]

Outcome = Literal["promote", "refuse", "inconclusive"]


@dataclass
class RewardStats:
    """Count, mean and sum of squared deviations of one arm's rewards (Welford, numerically stable)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, reward: float) -> None:
        self.n += 1
        delta = reward - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (reward - self.mean)

    def variance(self) -> float:
        """The sample variance (0 for fewer than two rewards)."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0


@dataclass(frozen=True)
class GateParams:
    margin: float = 0.1
    confidence: float = 0.95
    min_rewards: int = 20
    check_every: int = 20
    max_rewards: int = 300
    var_floor: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError("confidence must lie strictly between 0 and 1")
        if self.margin < 0 or self.var_floor <= 0:
            raise ValueError("margin must be >= 0 and var_floor > 0")
        if not 1 <= self.check_every <= self.max_rewards or self.min_rewards < 2:
            raise ValueError("need 1 <= check_every <= max_rewards and min_rewards >= 2")

    @property
    def looks(self) -> int:
        """K: the most looks one canary gets (the Bonferroni divisor)."""
        return self.max_rewards // self.check_every

    @property
    def z(self) -> float:
        """The one-sided critical value of each look."""
        alpha = 1.0 - self.confidence
        return NormalDist().inv_cdf(1.0 - alpha / self.looks)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome | None  #: None: keep collecting
    diff: float
    low: float
    high: float
    reason: str


def look_index(candidate_rewards: int, params: GateParams) -> int:
    """Which look a candidate reward count belongs to (the gate decides once per new look)."""
    return min(candidate_rewards, params.max_rewards) // params.check_every


def decide(candidate: RewardStats, live: RewardStats, params: GateParams) -> Verdict:
    """The verdict of one look at these statistics."""
    if candidate.n < params.min_rewards or live.n < params.min_rewards:
        ran_out = candidate.n >= params.max_rewards
        why = f"{candidate.n} candidate / {live.n} live rewards, {params.min_rewards} needed per arm"
        nan = math.nan
        return Verdict("inconclusive" if ran_out else None, nan, nan, nan, why)
    diff = candidate.mean - live.mean
    se = math.sqrt(
        max(candidate.variance(), params.var_floor) / candidate.n + max(live.variance(), params.var_floor) / live.n
    )
    low, high = diff - params.z * se, diff + params.z * se
    bound = -params.margin
    if low > bound:
        return Verdict("promote", diff, low, high, f"lower bound {low:+.4f} > {bound:+.4f}")
    if high < bound:
        return Verdict("refuse", diff, low, high, f"upper bound {high:+.4f} < {bound:+.4f}")
    if candidate.n >= params.max_rewards:
        return Verdict("inconclusive", diff, low, high, f"{candidate.n} candidate rewards and no decision")
    return Verdict(None, diff, low, high, f"[{low:+.4f}, {high:+.4f}] contains {bound:+.4f}")
