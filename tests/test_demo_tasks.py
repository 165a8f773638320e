"""The demo's task: a deterministic stream of distinct problems with right answers, its reward, and
that :class:`ArithmeticTask` is a :class:`TaskSpec` the loop can run."""

from __future__ import annotations

import itertools
import re

import pytest
from pydantic import BaseModel

from demo.spec import TaskSpec
from demo.tasks import ArithmeticTask, FinalAnswer, Task, reward, system_prompt, task_stream


def _recompute(task: Task) -> int:
    nums = [int(n) for n in re.findall(r"\d+", task.question)]
    if task.kind == "add":
        return nums[0] + nums[1]
    if task.kind == "sub":
        return nums[0] - nums[1]
    return nums[0] * nums[1]


def test_same_seed_same_stream_other_seed_other_stream():
    assert list(itertools.islice(task_stream(5), 30)) == list(itertools.islice(task_stream(5), 30))
    assert list(itertools.islice(task_stream(5), 30)) != list(itertools.islice(task_stream(6), 30))


def test_every_prompt_is_new_and_its_answer_right():
    tasks = list(itertools.islice(task_stream(1), 3000))  # far more than a 14-minute run asks
    assert len({t.question for t in tasks}) == 3000
    for task in tasks:
        assert task.kind in {"add", "sub", "mul"}
        assert task.answer == _recompute(task) and task.answer > 0


def test_reward_is_one_for_the_right_number_only():
    task = Task("Tom has 3 bags with 4 coins in each. How many coins does Tom have?", 12, "mul")
    assert reward(task, FinalAnswer(answer=12)) == 1.0
    assert reward(task, FinalAnswer(answer=13)) == 0.0
    assert reward(task, None) == 0.0

    class Other(BaseModel):
        answer: int

    assert reward(task, Other(answer=12)) == 0.0  # only the task's FinalAnswer counts


def test_final_answer_validates_like_the_agent_loop_needs():
    assert FinalAnswer.model_validate({"answer": "12"}).answer == 12
    with pytest.raises(ValueError):
        FinalAnswer.model_validate({"answer": "twelve"})


def test_the_arithmetic_task_is_a_task_spec():
    spec: TaskSpec[Task] = ArithmeticTask()
    first = next(spec.prompts(0))
    assert first == next(task_stream(0))
    assert spec.user_message(first) == first.question
    assert spec.reward(first, FinalAnswer(answer=first.answer)) == 1.0
    assert spec.final_answer_model is FinalAnswer and spec.max_steps == 1
    assert spec.tools == () and spec.authorized_imports == ()
    assert spec.system_prompt() == system_prompt()
    assert "final_answer(answer=" in spec.system_prompt() and "<example>" in spec.system_prompt()
