"""The pacing policy of the live loop: how far generation runs ahead, and when it stops."""

from __future__ import annotations

import pytest

from demo.pacing import cycle_estimate, generation_allowed, out_of_time, window_pending


def test_generation_runs_one_window_beside_the_one_in_training():
    w = 16
    # nothing trained yet: the first window (for v1) and one more (for v2, while v1 trains)
    assert generation_allowed(0, 0, w, max_ahead=1)
    assert generation_allowed(2 * w - 1, 0, w, max_ahead=1)
    assert not generation_allowed(2 * w, 0, w, max_ahead=1)
    # v1 live (trained on 16): window 2 is full and training, window 3 may fill on v1
    assert generation_allowed(2 * w, w, w, max_ahead=1)
    assert not generation_allowed(3 * w, w, w, max_ahead=1)


def test_max_ahead_zero_is_the_old_lockstep():
    w = 16
    assert generation_allowed(w - 1, 0, w, max_ahead=0)
    assert not generation_allowed(w, 0, w, max_ahead=0)  # wait for v1 before generating window 2
    assert generation_allowed(w, w, w, max_ahead=0)


def test_a_window_closed_early_by_time_counts_at_its_real_size():
    # v1 was trained on 10 examples (its window closed by time): 10 consumed, not 16
    assert generation_allowed(10 + 2 * 16 - 1, 10, 16, max_ahead=1)
    assert not generation_allowed(10 + 2 * 16, 10, 16, max_ahead=1)


def test_window_pending():
    assert not window_pending(15, 0, 16)
    assert window_pending(16, 0, 16)
    assert window_pending(40, 16, 16)
    assert not window_pending(40, 32, 16)


def test_cycle_estimate_is_the_median_of_the_last_gaps():
    assert cycle_estimate([], 150.0) == 150.0
    assert cycle_estimate([100.0], 150.0) == 150.0  # one version: no gap yet
    assert cycle_estimate([100.0, 160.0], 150.0) == pytest.approx(60.0)
    # gaps 200 (old), 50, 70, 60: the last three
    assert cycle_estimate([0.0, 200.0, 250.0, 320.0, 380.0], 150.0) == pytest.approx(60.0)
    assert cycle_estimate([380.0, 0.0, 320.0, 200.0, 250.0], 150.0) == pytest.approx(60.0)  # any order


def test_out_of_time_keeps_a_cycle_and_the_teardown():
    deadline = 840.0
    assert not out_of_time(700.0, deadline, 60.0, 40.0)
    assert out_of_time(740.0, deadline, 60.0, 40.0)
    assert out_of_time(745.0, deadline, 60.0, 40.0)
    assert out_of_time(900.0, deadline, 0.0, 0.0)
