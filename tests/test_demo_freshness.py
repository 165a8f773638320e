"""The freshness arithmetic: the split adds up, each part is the right difference."""

from __future__ import annotations

import math

import pytest

from demo.freshness import VersionTimes, p50, split
from demo.observe import train_seconds
from demo.report import RoundRow, Summary


def _times(**kw: float | None) -> VersionTimes:
    base: dict[str, float | int | None] = dict(
        version=3, reward_at=100.0, joined_at=100.4, upload_started_at=131.0, uploaded_at=131.3, live_at=131.9
    )
    base.update(kw)
    return VersionTimes(**base)  # type: ignore[arg-type]


def test_split_parts_are_the_differences_and_add_up():
    f = split(_times(train_s=29.5, load_ms=80.0))
    assert f.version == 3
    assert f.join_s == pytest.approx(0.4)
    assert f.train_s == pytest.approx(29.5)
    assert f.window_s == pytest.approx(131.0 - 100.4 - 29.5)
    assert f.upload_s == pytest.approx(0.3)
    assert f.load_s == pytest.approx(0.6)
    assert f.total_s == pytest.approx(31.9)
    assert f.join_s + f.window_s + f.train_s + f.upload_s + f.load_s == pytest.approx(f.total_s)
    assert f.vllm_load_ms == 80.0


def test_without_the_trainers_time_the_window_takes_it_all():
    f = split(_times(train_s=None))
    assert f.train_s == 0.0
    assert f.window_s == pytest.approx(131.0 - 100.4)
    assert f.join_s + f.window_s + f.upload_s + f.load_s == pytest.approx(f.total_s)


def test_p50():
    assert p50([]) is None
    assert p50([3.0, 1.0, 2.0]) == 2.0
    assert p50([1.0, 2.0, 3.0, 10.0]) == 2.5


def test_train_seconds_reads_the_trainers_log_line_of_this_model_only():
    log = (
        "2026-11-26 10:38:52,865 INFO trainer.service: demo-a v1 published: 4 examples, 3225 tokens in 92.7 s, {}\n"
        "2026-11-26 10:38:53,000 INFO trainer.service: demo-b v1 published: 4 examples, 10 tokens in 1.0 s, {}\n"
        "2026-11-26 10:39:47,427 INFO trainer.service: demo-a v2 published: 4 examples, 2069 tokens in 34.7 s, {}\n"
    )
    assert train_seconds(log, "demo-a") == {1: 92.7, 2: 34.7}
    assert train_seconds("nothing useful", "demo-a") == {}


def _row(rnd: int, heldout: float, total: float | None) -> RoundRow:
    fresh = split(_times(live_at=100.0 + total)) if total is not None else None
    return RoundRow(rnd, rnd, 16 if rnd else 0, None, heldout, 0.05, 48, 0, fresh, None)


def test_summary_line_has_the_issues_keys_and_the_median_freshness():
    summary = Summary([_row(0, 0.2, None), _row(1, 0.3, 30.0), _row(2, 0.5, 40.0), _row(3, 0.45, 35.0)], minutes=12.3)
    line = summary.line()
    assert list(line) == ["reward_before", "reward_after", "rounds", "freshness_s_p50", "minutes"]
    assert line["reward_before"] == 0.2 and line["reward_after"] == 0.45
    assert line["rounds"] == 3
    assert math.isclose(line["freshness_s_p50"], 35.0)
    assert line["minutes"] == 12.3
