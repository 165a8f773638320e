"""The live reward by kind of prompt (demo.kinds): a kind that did not rise with the others is flagged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel

from demo.kinds import by_kind, format_kinds
from demo.settings import DemoSettings
from demo.tasks import ArithmeticTask
from demo.workload import Sample, answer
from maximum_continual import MessageT, PredictionResponseT


def _samples(version: int, kind: str | None, right: int, wrong: int) -> list[Sample]:
    return [Sample("p", version, 1.0, 0.0, 0.0, kind=kind) for _ in range(right)] + [
        Sample("p", version, 0.0, 0.0, 0.0, kind=kind) for _ in range(wrong)
    ]


def test_a_collapsed_kind_is_behind_though_the_pooled_rise_is_large():
    # the shape of a lambda-0 demo run: additions and products learned, subtractions answered with '+'
    samples = [
        *_samples(0, "add", 3, 7),
        *_samples(0, "sub", 1, 9),
        *_samples(0, "mul", 0, 12),
        *_samples(20, "add", 15, 1),
        *_samples(20, "sub", 0, 16),
        *_samples(20, "mul", 15, 1),
    ]
    rows = {r.kind: r for r in by_kind(samples, [20])}
    assert list(rows) == ["add", "mul", "sub"]
    assert rows["sub"].behind and not rows["add"].behind and not rows["mul"].behind
    assert rows["sub"].rise.rise == pytest.approx(-0.1)
    assert rows["sub"].before.n == 10 and rows["sub"].after.n == 16
    lines = format_kinds(list(rows.values()))
    assert lines[2].endswith("BEHIND") and "sub" in lines[2]
    assert not any(line.endswith("BEHIND") for line in lines[:2])
    json.dumps({k: r.as_dict() for k, r in rows.items()})


def test_a_kind_that_starts_lower_and_rises_as_much_is_not_behind():
    samples = [
        *_samples(0, "add", 5, 5),
        *_samples(0, "mul", 0, 10),
        *_samples(3, "add", 14, 2),
        *_samples(3, "mul", 9, 7),
    ]
    rows = by_kind(samples, [3])
    assert [r.kind for r in rows] == ["add", "mul"]
    assert not any(r.behind for r in rows)
    mul = rows[1]
    assert mul.vs_rest.rise == pytest.approx((9 / 16 - 0.0) - (14 / 16 - 0.5))
    low, high = mul.vs_rest.ci_low, mul.vs_rest.ci_high
    assert low is not None and high is not None and low < 0 < high


def test_a_kind_that_started_higher_is_not_behind_when_every_kind_reaches_the_ceiling():
    # seen in a demo run: additions 0.45 -> 0.94, subtractions and products ~0.2 -> 1.0
    samples = [
        *_samples(0, "add", 5, 6),
        *_samples(0, "sub", 0, 12),
        *_samples(0, "mul", 0, 9),
        *_samples(9, "add", 18, 0),
        *_samples(9, "sub", 15, 0),
        *_samples(9, "mul", 15, 0),
    ]
    add = by_kind(samples, [9])[0]
    assert add.kind == "add" and add.vs_rest.ci_high is not None and add.vs_rest.ci_high < 0  # rose less
    assert add.after_vs_rest.rise == 0.0 and not add.behind  # but it is not below the others


def test_only_version_0_and_the_after_versions_count():
    samples = [*_samples(0, "a", 1, 1), *_samples(0, "b", 1, 1), *_samples(1, "a", 0, 5), *_samples(2, "a", 2, 0)]
    a = by_kind(samples, [2])[0]
    assert a.kind == "a" and a.before.n == 2 and a.after.n == 2 and a.after.mean == 1.0


def test_no_rows_without_two_kinds():
    assert by_kind([*_samples(0, None, 1, 1), *_samples(1, None, 2, 0)], [1]) == []
    assert by_kind([*_samples(0, "one", 1, 1), *_samples(1, "one", 2, 0)], [1]) == []


def test_a_kind_missing_after_has_no_interval_and_is_not_flagged():
    rows = by_kind([*_samples(0, "a", 1, 1), *_samples(0, "b", 1, 1), *_samples(1, "a", 2, 0)], [1])
    b = rows[1]
    assert b.after.n == 0 and b.vs_rest.rise is None and not b.behind
    assert "-" in format_kinds(rows)[1]


class _Right:
    """Answers every prompt with the same FinalAnswer, as version 3."""

    def __init__(self, final: BaseModel) -> None:
        self.final = final

    async def apredict(self, messages: Sequence[MessageT], *args: Any, **kwargs: Any) -> PredictionResponseT:
        return PredictionResponseT(
            final_response=self.final, messages=list(messages), metadata={"prediction_id": "p1", "adapter_version": 3}
        )

    async def aupdate(self, predictions: Sequence[Any]) -> None:
        pass


def test_a_sample_carries_its_prompts_kind():
    spec = ArithmeticTask()
    task = next(spec.prompts(0))
    model = _Right(spec.final_answer_model(answer=task.answer))
    sample, _ = asyncio.run(answer(model, spec, task, DemoSettings()))
    assert sample.kind == task.kind and sample.version == 3 and sample.reward == 1.0
