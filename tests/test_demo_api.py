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


def test_the_app_node_and_processor_move_to_vllms_worker_cores(monkeypatch, tmp_path) -> None:
    import os

    import trainer.cpus
    from demo.services import Parts, RunIds
    from demo.settings import DemoSettings

    calls: list[set[int]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append(set(cpus)))
    monkeypatch.setattr(trainer.cpus, "vllm_worker_cores", lambda: {0})
    parts = Parts(DemoSettings(), RunIds("t"), tmp_path)
    parts._serve_on_worker_cores()
    assert calls == [{0}] and parts.own_cpus == {0, 1}
    parts.stop()  # nothing started; the process gets its cores back
    assert calls == [{0}, {0, 1}] and parts.own_cpus is None

    calls.clear()
    monkeypatch.setattr(trainer.cpus, "vllm_worker_cores", lambda: set())  # vLLM elsewhere: stay put
    Parts(DemoSettings(), RunIds("u"), tmp_path)._serve_on_worker_cores()
    assert calls == []
    calls.clear()
    monkeypatch.setattr(trainer.cpus, "vllm_worker_cores", lambda: {0})
    Parts(DemoSettings(demo_cpu_split=False), RunIds("v"), tmp_path)._serve_on_worker_cores()
    assert calls == []
