"""The demo package's public surface is explicit and pinned (what ``mc bench learn`` builds on)."""

from __future__ import annotations

import inspect

import demo

PUBLIC = {
    "ArithmeticTask",
    "DemoSettings",
    "FinalAnswer",
    "Freshness",
    "LiveResults",
    "LiveRun",
    "Task",
    "TaskSpec",
    "VersionTimes",
    "run_demo",
    "run_live",
    "run_live_loop",
    "split",
    "write_plot",
}


def test_all_is_pinned_and_complete():
    assert set(demo.__all__) == PUBLIC
    public = {name for name, value in vars(demo).items() if not name.startswith("_") and not inspect.ismodule(value)}
    assert public == PUBLIC  # nothing public that __all__ forgets


def test_no_demo_only_trainer_tuning():
    fields = set(demo.DemoSettings.model_fields)
    for gone in ("demo_learning_rate", "demo_steps_per_window", "demo_lora_rank", "demo_window_seconds"):
        assert gone not in fields
