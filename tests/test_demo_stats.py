"""The live-traffic statistics: the 95% interval of a mean and of a rise, and the 'after' pool."""

from __future__ import annotations

import math
import random

import pytest

from demo.stats import Z95, after_versions, rise, score


def test_score_is_the_mean_with_the_sample_variance():
    sc = score([1.0, 0.0, 0.0, 1.0, 1.0])
    assert sc.n == 5 and sc.mean == pytest.approx(0.6)
    assert sc.var == pytest.approx(0.3)  # sum of squares 1.2 over n - 1 = 4
    assert sc.half_width == pytest.approx(Z95 * math.sqrt(0.3 / 5))


def test_no_interval_below_two_samples():
    assert score([]).mean is None and score([]).half_width is None
    one = score([1.0])
    assert one.mean == 1.0 and one.var is None and one.half_width is None


def test_rise_is_welchs_difference_of_two_means():
    before, after = score([0.0, 0.0, 1.0, 0.0]), score([1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    r = rise(before, after)
    assert r.rise == pytest.approx(4 / 6 - 1 / 4)
    assert r.rise is not None
    se = math.sqrt(0.25 / 4 + (4 / 15) / 6)  # each side's own sample variance over its own n
    assert r.ci_low == pytest.approx(r.rise - Z95 * se)
    assert r.ci_high == pytest.approx(r.rise + Z95 * se)


def test_rise_without_a_side_or_its_variance():
    assert rise(score([]), score([1.0, 0.0])).rise is None
    r = rise(score([1.0]), score([1.0, 0.0]))
    assert r.rise == pytest.approx(-0.5) and r.ci_low is None and r.ci_high is None


def test_the_interval_covers_the_true_rise_about_95_percent_of_the_time():
    rng = random.Random(7)
    hits, trials = 0, 2000
    for _ in range(trials):
        before = score([float(rng.random() < 0.3) for _ in range(60)])
        after = score([float(rng.random() < 0.5) for _ in range(60)])
        r = rise(before, after)
        assert r.ci_low is not None and r.ci_high is not None
        hits += r.ci_low <= 0.2 <= r.ci_high
    assert 0.93 <= hits / trials <= 0.97


def test_after_pools_the_newest_versions_until_enough_samples():
    counts = {0: 40, 1: 16, 2: 16, 3: 20, 4: 16}
    assert after_versions(counts, 48) == [2, 3, 4]  # 16 + 20 + 16 = 52 >= 48
    assert after_versions(counts, 36) == [3, 4]
    assert after_versions(counts, 16) == [4]
    assert after_versions(counts, 1) == [4]


def test_after_never_takes_the_base_model_nor_empty_versions():
    assert after_versions({0: 100, 1: 10, 2: 0, 3: 5}, 48) == [1, 3]  # not enough: all but v0
    assert after_versions({0: 100}, 48) == []
    assert after_versions({0: 10, 5: 0}, 1) == []
