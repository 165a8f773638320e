"""The demo's task generator and reward function: deterministic, disjoint, right answers."""

from __future__ import annotations

import itertools
import re

import pytest
from pydantic import BaseModel

from demo.tasks import FinalAnswer, Task, heldout_tasks, reward, task_stream


def _recompute(task: Task) -> int:
    nums = [int(n) for n in re.findall(r"\d+", task.question)]
    if task.kind == "add":
        return nums[0] + nums[1]
    if task.kind == "sub":
        return nums[0] - nums[1]
    return nums[0] * nums[1]


def test_same_seed_same_problems_other_seed_other_problems():
    assert heldout_tasks(20, seed=3) == heldout_tasks(20, seed=3)
    assert heldout_tasks(20, seed=3) != heldout_tasks(20, seed=4)
    assert list(itertools.islice(task_stream(5), 30)) == list(itertools.islice(task_stream(5), 30))


def test_heldout_problems_are_distinct_and_answers_are_right():
    tasks = heldout_tasks(200)
    assert len({t.question for t in tasks}) == 200
    for task in tasks + list(itertools.islice(task_stream(1), 200)):
        assert task.kind in {"add", "sub", "mul"}
        assert task.answer == _recompute(task) and task.answer > 0


def test_the_training_stream_never_yields_an_excluded_problem():
    # exclude problems the unfiltered stream is known to produce, so the filter must act
    unfiltered = list(itertools.islice(task_stream(0), 2000))
    excluded = {t.question for t in unfiltered[:30]}
    filtered = list(itertools.islice(task_stream(0, excluded), 2000))
    assert not excluded & {t.question for t in filtered}
    heldout = {t.question for t in heldout_tasks(16)}
    assert not heldout & {t.question for t in itertools.islice(task_stream(0, heldout), 2000)}


def test_reward_is_one_for_the_right_number_only():
    task = Task("Tom has 3 bags with 4 coins in each. How many coins does Tom have?", 12, "mul")
    assert reward(task, FinalAnswer(answer=12)) == 1.0
    assert reward(task, FinalAnswer(answer=13)) == 0.0
    assert reward(task, None) == 0.0

    class Other(BaseModel):
        answer: int

    assert reward(task, Other(answer=12)) == 0.0  # only the demo's FinalAnswer counts


def test_final_answer_validates_like_the_agent_loop_needs():
    assert FinalAnswer.model_validate({"answer": "12"}).answer == 12
    with pytest.raises(ValueError):
        FinalAnswer.model_validate({"answer": "twelve"})
