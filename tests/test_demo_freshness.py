"""The freshness split on synthetic times: each part is its own difference or the trainer's own
figure, the remainder is reported (not absorbed), and an older manifest leaves parts unknown."""

from __future__ import annotations

import pytest

from demo.freshness import PARTS, Freshness, VersionTimes, adds_up, p50, part_medians, split

# a version's life, unix seconds: reward 1000.0, joined 1000.4, the trainer takes the window at
# 1030.4 (the previous window was still training), prepares 2.0, trains 40.0, saves 0.5, uploads 0.3,
# builds the AdapterUpdate at 1073.5 (0.3 s of bookkeeping between its steps), the node serves at 1074.1
METRICS = {"window_closed_at": 1030.4, "prepare_s": 2.0, "train_s": 40.0, "save_s": 0.5, "upload_s": 0.3}


def _times(metrics: dict[str, float] = METRICS, **kw: float) -> VersionTimes:
    at = {"reward_at": 1000.0, "joined_at": 1000.4, "created_at": 1073.5, "live_at": 1074.1, **kw}
    return VersionTimes.from_metrics(3, metrics, vllm_load_ms=80.0, **at)


def test_each_part_is_measured_on_its_own():
    f = split(_times())
    assert f.version == 3
    assert f.total_s == pytest.approx(74.1)
    assert f.join_s == pytest.approx(0.4)
    assert f.wait_s == pytest.approx(30.0)
    assert (f.prepare_s, f.train_s, f.save_s, f.upload_s) == (2.0, 40.0, 0.5, 0.3)
    assert f.load_s == pytest.approx(0.6)
    assert f.vllm_load_ms == 80.0


def test_the_remainder_is_reported_and_the_parts_plus_it_make_the_total():
    f = split(_times())
    assert f.unaccounted_s == pytest.approx(0.3)  # the trainer's bookkeeping between measured steps
    assert sum(getattr(f, p) for p in PARTS) + f.unaccounted_s == pytest.approx(f.total_s)
    assert adds_up(f)


def test_a_part_that_goes_unmeasured_fails_the_check():
    # the trainer spent 20 s somewhere it does not measure: created_at 20 s later, node 20 s later
    f = split(_times(created_at=1093.5, live_at=1094.1))
    assert f.unaccounted_s == pytest.approx(20.3)
    assert not adds_up(f)  # 20.3 s > max(1 s, 5% of 94 s)
    assert adds_up(f, abs_s=25.0)


def test_the_tolerance_is_absolute_or_relative_whichever_is_larger():
    big = split(_times(created_at=1073.5 + 3.0, live_at=1074.1 + 3.0))  # 3.3 s of 77.1: 4.3%
    assert adds_up(big)
    assert not adds_up(big, rel=0.01)
    negative = split(_times(created_at=1072.0, live_at=1072.6))  # parts longer than the total
    assert negative.unaccounted_s == pytest.approx(-1.2)
    assert not adds_up(negative, rel=0.0)


def test_an_older_manifest_leaves_its_parts_unknown_not_a_remainder():
    f = split(_times({"train_s": 40.0}))  # a trainer that wrote train_s only
    assert f.train_s == 40.0
    assert f.wait_s is None and f.prepare_s is None and f.save_s is None and f.upload_s is None
    assert f.unaccounted_s is None
    assert f.join_s == pytest.approx(0.4) and f.load_s == pytest.approx(0.6)  # measured without the trainer
    assert not adds_up(f)
    assert split(_times({})).train_s is None


def test_as_dict_rounds_and_keeps_none():
    d = split(_times({"train_s": 40.123456})).as_dict()
    assert d["train_s"] == 40.123 and d["wait_s"] is None and d["unaccounted_s"] is None
    assert list(d) == ["version", "total_s", *PARTS, "unaccounted_s", "vllm_load_ms"]


def test_medians_of_each_part_over_the_versions_that_measured_it():
    fs: list[Freshness] = [split(_times()), split(_times(live_at=1080.1)), split(_times({"train_s": 10.0}))]
    med = part_medians(fs)
    assert med["total_s"] == pytest.approx(74.1)
    assert med["train_s"] == pytest.approx(40.0)  # median of 40, 40, 10
    assert med["prepare_s"] == pytest.approx(2.0)  # of the two that measured it
    assert med["load_s"] == pytest.approx(0.6)  # of 0.6, 6.6, 0.6
    assert med["unaccounted_s"] == pytest.approx(0.3)  # the third version has none
    assert part_medians([])["total_s"] is None


def test_p50():
    assert p50([]) is None
    assert p50([3.0, 1.0, 2.0]) == 2.0
    assert p50([1.0, 2.0, 3.0, 10.0]) == 2.5
