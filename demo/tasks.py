"""The demo's task: one-step arithmetic word problems with a programmatic reward.

Problems are made from templates with seeded random numbers, so a seed gives the same stream on every
machine; the stream never repeats a problem, so each live prompt is new (held out by construction:
nothing has trained on it when the live adapter answers it). The agent answers through the code
executor into :class:`FinalAnswer`; the reward is 1.0 for the right number, else 0.0.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from maximum_continual.system_prompt import render_example

__all__ = ["ArithmeticTask", "FinalAnswer", "Task", "distinct", "reward", "system_prompt", "task_stream"]


class FinalAnswer(BaseModel):
    """What the agent must pass to ``final_answer(...)``."""

    answer: int = Field(description="the number that answers the question")


@dataclass(frozen=True, slots=True)
class Task:
    question: str
    answer: int
    kind: str


_NAMES = ("Anna", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Lena", "Tom")
_ITEMS = ("apples", "books", "pencils", "marbles", "stickers", "cookies", "stamps", "shells", "cards", "coins")
_CONTAINERS = ("bags", "boxes", "jars", "baskets")

#: The app's own short system prompt, in the SDK's in-format example style (``render_example``: the
#: SDK turns each block into chat turns). SmolLM2-135M needs the examples to write code at all and a
#: worked word problem to solve any (with the SDK's two generic examples only: reward 0). The SDK's
#: full default prompt works as well but is 349 tokens against 182, and on a 2-core CPU the trainer's
#: cost per example is mostly the prompt.
_INTRO = (
    "You solve tasks by writing Python code in one ```python block. "
    "The code must end with final_answer(answer=...), where answer is an integer."
)
_EXAMPLES = (
    (
        ("user", "How many letters are in the word 'continual'?"),
        ("assistant", "```python\ncount = len('continual')\nprint(count)\nfinal_answer(answer=int(count))\n```"),
    ),
    (
        ("user", "Mia has 7 pears and buys 5 more pears. How many pears does Mia have now?"),
        ("assistant", "```python\npears = 7 + 5\nprint(pears)\nfinal_answer(answer=int(pears))\n```"),
    ),
)


def system_prompt() -> str:
    """The agent's system prompt: the instruction and two in-format examples (one a word problem)."""
    return "\n".join([_INTRO, *(render_example(turns) for turns in _EXAMPLES)])


def _make(rng: random.Random) -> Task:
    """One problem of one step (SmolLM2-135M solves some of these with sampling, not all)."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    kind = rng.choice(("add", "sub", "mul"))
    if kind == "add":
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        return Task(
            f"{name} has {a} {item} and gets {b} more {item}. How many {item} does {name} have now?", a + b, kind
        )
    if kind == "sub":
        b, left = rng.randint(2, 30), rng.randint(2, 30)
        return Task(
            f"{name} has {b + left} {item} and gives away {b} {item}. How many {item} does {name} have left?",
            left,
            kind,
        )
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    box = rng.choice(_CONTAINERS)
    return Task(f"{name} has {a} {box} with {b} {item} in each. How many {item} does {name} have?", a * b, kind)


def distinct(make: Callable[[random.Random], Task], seed: str, *, max_misses: int = 100_000) -> Iterator[Task]:
    """An endless stream of ``make(rng)`` (``rng`` seeded with ``seed``), each question text once;
    raises RuntimeError once ``max_misses`` draws in a row repeated a question (the templates ran out)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    misses = 0
    while True:
        task = make(rng)
        if task.question in seen:
            misses += 1
            if misses >= max_misses:
                raise RuntimeError(f"no new question in {max_misses} draws after {len(seen)}: the templates ran out")
            continue
        misses = 0
        seen.add(task.question)
        yield task


def task_stream(seed: int = 0) -> Iterator[Task]:
    """An endless stream of distinct problems (a text seen before is skipped)."""
    return distinct(_make, f"live:{seed}")


def reward(task: Task, final_response: BaseModel | None) -> float:
    """1.0 when the agent's final answer is the right number, else 0.0."""
    if not isinstance(final_response, FinalAnswer):
        return 0.0
    return 1.0 if final_response.answer == task.answer else 0.0


@dataclass(frozen=True)
class ArithmeticTask:
    """The demo's :class:`~demo.spec.TaskSpec`: one agent step, no tools, integer answers."""

    name: str = "arithmetic"
    final_answer_model: type[BaseModel] = FinalAnswer
    max_steps: int = 1  # one step: each extra step is one more sequence for a CPU trainer
    tools: Sequence[Any] = ()
    authorized_imports: Sequence[str] = ()

    def system_prompt(self) -> str:
        return system_prompt()

    def prompts(self, seed: int) -> Iterator[Task]:
        return task_stream(seed)

    def user_message(self, task: Task) -> str:
        return task.question

    def reward(self, task: Task, final_response: BaseModel | None) -> float:
        return reward(task, final_response)
