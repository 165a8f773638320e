"""``mc bench sandbox``: what running the agent's code in its own process costs per step.

The same steps through :class:`~maximum_continual.sandbox.InProcessExecutor` (the former executor,
the baseline) and :class:`~maximum_continual.sandbox.SandboxExecutor`: ``x = add(x, 1)`` (one tool
call, so one round trip to the app over the pipe) and ``y = 1 + 1`` (no tool), ``steps`` of each,
after a short warm-up. The process's startup (Python + smolagents import, once per agent run, hidden
behind the model's first turn in the agent loop) is measured apart, as the median of a few starts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from maximum_continual.sandbox import InProcessExecutor, SandboxExecutor, StepOutcome
from maximum_continual.tools import Tool

__all__ = ["run"]

_TOOL_STEP = "x = add(x, 1)"
_PLAIN_STEP = "y = 1 + 1"


class _Add(Tool):
    name = "add"
    description = "Adds two integers"
    inputs = {"a": {"type": "integer", "description": "first"}, "b": {"type": "integer", "description": "second"}}
    output_type = "integer"

    def forward(self, a: int, b: int) -> int:
        return a + b


def _per_step_ms(run_step: Callable[[str], StepOutcome], code: str, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        outcome = run_step(code)
        if outcome.error is not None:
            raise RuntimeError(f"benchmark step failed: {outcome.error}")
    return (time.perf_counter() - t0) * 1000 / steps


def _measure(executor: InProcessExecutor | SandboxExecutor, steps: int) -> dict[str, float]:
    executor.run("x = 0")
    for _ in range(10):  # warm-up: first calls, caches
        executor.run(_TOOL_STEP)
    tool_ms = _per_step_ms(executor.run, _TOOL_STEP, steps)
    plain_ms = _per_step_ms(executor.run, _PLAIN_STEP, steps)
    return {"tool_ms": tool_ms, "plain_ms": plain_ms}


def run(steps: int = 200, startups: int = 3, step_timeout_s: float = 10.0) -> dict[str, Any]:
    tools = [_Add()]
    with InProcessExecutor(tools, [], step_timeout_s=step_timeout_s) as baseline:
        old = _measure(baseline, steps)
    starts = []
    for _ in range(startups):
        with SandboxExecutor(tools, [], step_timeout_s=step_timeout_s) as sandbox:
            starts.append(sandbox.start() * 1000)
    with SandboxExecutor(tools, [], step_timeout_s=step_timeout_s) as sandbox:
        sandbox.start()
        new = _measure(sandbox, steps)
    in_process_ms = (old["tool_ms"] + old["plain_ms"]) / 2
    process_ms = (new["tool_ms"] + new["plain_ms"]) / 2
    print(f"{'step':<16}{'in-process ms':>15}{'process ms':>12}{'overhead ms':>13}")
    for label, key in (("x = add(x, 1)", "tool_ms"), ("y = 1 + 1", "plain_ms")):
        print(f"{label:<16}{old[key]:>15.3f}{new[key]:>12.3f}{new[key] - old[key]:>13.3f}")
    print(f"sandbox process startup (median of {startups}): {statistics.median(starts):.0f} ms")
    return {
        "steps": steps,
        "in_process_ms": round(in_process_ms, 3),
        "process_ms": round(process_ms, 3),
        "overhead_ms": round(process_ms - in_process_ms, 3),
        "tool_step_overhead_ms": round(new["tool_ms"] - old["tool_ms"], 3),
        "plain_step_overhead_ms": round(new["plain_ms"] - old["plain_ms"], 3),
        "startup_ms": round(statistics.median(starts), 1),
    }
