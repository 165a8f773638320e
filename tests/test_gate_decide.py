"""The gate's sequential test, pure (gate.decide): properties with Hypothesis, error rates by simulation."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gate.decide import GateParams, RewardStats, decide, look_index

P = GateParams(margin=0.05, confidence=0.95, min_rewards=20, check_every=10, max_rewards=200)
rewards = st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=0, max_size=300)


def _stats(values: list[float]) -> RewardStats:
    s = RewardStats()
    for v in values:
        s.add(v)
    return s


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=2, max_size=200))
def test_running_statistics_match_the_textbook_ones(values: list[float]) -> None:
    s = _stats(values)
    assert s.n == len(values)
    assert math.isclose(s.mean, statistics.fmean(values), rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(s.variance(), statistics.variance(values), rel_tol=1e-6, abs_tol=1e-3)


@settings(max_examples=300, deadline=None)
@given(rewards, rewards)
def test_a_verdict_agrees_with_its_interval_and_needs_enough_rewards(cand: list[float], live: list[float]) -> None:
    c, lv = _stats(cand), _stats(live)
    v = decide(c, lv, P)
    if c.n < P.min_rewards or lv.n < P.min_rewards:
        assert v.outcome in (None, "inconclusive")
        assert v.outcome is None or c.n >= P.max_rewards
        return
    assert v.low <= v.diff <= v.high
    if v.outcome == "promote":
        assert v.low > -P.margin
    elif v.outcome == "refuse":
        assert v.high < -P.margin
    elif v.outcome == "inconclusive":
        assert c.n >= P.max_rewards and v.low <= -P.margin <= v.high
    else:
        assert c.n < P.max_rewards and v.low <= -P.margin <= v.high


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_looks_are_at_most_k_and_never_go_back(n: int) -> None:
    assert 0 <= look_index(n, P) <= P.looks
    assert look_index(n + 1, P) >= look_index(n, P)


def _run(p_cand: float, p_live: float, rng: random.Random, params: GateParams = P, live_per_cand: int = 4) -> str:
    """One canary as the gate sees it: Bernoulli rewards, a look at every check_every candidate rewards."""
    c, lv = RewardStats(), RewardStats()
    looked = 0
    while True:
        c.add(float(rng.random() < p_cand))
        for _ in range(live_per_cand):
            lv.add(float(rng.random() < p_live))
        look = look_index(c.n, params)
        if look > looked:
            looked = look
            v = decide(c, lv, params)
            if v.outcome is not None:
                return v.outcome


@pytest.mark.parametrize(
    ("p_cand", "p_live", "wrong"),
    [
        (0.5, 0.5, "refuse"),  # as good as live: refusing it is the error
        (0.6, 0.5, "refuse"),
        (0.35, 0.5, "promote"),  # worse by 0.15 (three margins): promoting it is the error
        (0.4, 0.5, "promote"),  # worse by two margins
    ],
)
def test_wrong_verdicts_stay_under_alpha(p_cand: float, p_live: float, wrong: str) -> None:
    rng = random.Random(f"{p_cand}-{p_live}")
    runs = 400
    outcomes = [_run(p_cand, p_live, rng) for _ in range(runs)]
    assert outcomes.count(wrong) / runs <= 1 - P.confidence


def test_clear_cases_are_decided_early_and_right() -> None:
    rng = random.Random(1)
    assert {_run(0.0, 0.8, rng) for _ in range(50)} == {"refuse"}  # a broken candidate
    assert {_run(0.9, 0.3, rng) for _ in range(50)} == {"promote"}  # a much better one
    # broken: decided at the first look that has min_rewards on both arms
    c, lv = _stats([0.0] * 20), _stats([1.0, 0.0, 1.0, 1.0] * 20)
    assert decide(c, lv, P).outcome == "refuse"


def test_no_decision_by_the_maximum_means_inconclusive() -> None:
    # exactly on the boundary with a huge spread: neither side can be shown
    c = _stats([0.0, 1.0] * 100)  # mean 0.5
    lv = _stats([0.0, 1.0] * 100 + [1.0] * 22)  # mean ~0.55: d ~ -0.05 = -margin
    v = decide(c, lv, P)
    assert c.n == P.max_rewards and v.outcome == "inconclusive"


def test_parameters_are_checked() -> None:
    for bad in ({"confidence": 1.0}, {"margin": -0.1}, {"check_every": 0}, {"min_rewards": 1}, {"var_floor": 0}):
        with pytest.raises(ValueError):
            GateParams(**bad)
