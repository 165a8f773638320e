"""The demo's task: arithmetic word problems with a programmatic reward.

Problems are made from templates with seeded random numbers, so a seed gives the same problems on
every machine. The held-out set and the training stream come from different seeds, and the stream
skips any problem whose text is in the held-out set, so no held-out prompt is ever trained on.

The agent answers through the code executor into :class:`FinalAnswer`; the reward is 1.0 for the
right number and 0.0 for anything else (a wrong number, no valid final answer, a failed run).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel, Field

__all__ = ["FinalAnswer", "Task", "heldout_tasks", "reward", "task_stream"]


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


def heldout_tasks(n: int, seed: int = 0) -> list[Task]:
    """``n`` distinct held-out problems (the same for a given seed)."""
    rng = random.Random(f"heldout:{seed}")
    out: list[Task] = []
    seen: set[str] = set()
    while len(out) < n:
        task = _make(rng)
        if task.question not in seen:
            seen.add(task.question)
            out.append(task)
    return out


def task_stream(seed: int = 0, exclude: frozenset[str] | set[str] = frozenset()) -> Iterator[Task]:
    """An endless stream of training problems, none of whose texts is in ``exclude``."""
    rng = random.Random(f"train:{seed}")
    while True:
        task = _make(rng)
        if task.question not in exclude:
            yield task


def reward(task: Task, final_response: BaseModel | None) -> float:
    """1.0 when the agent's final answer is the right number, else 0.0."""
    if not isinstance(final_response, FinalAnswer):
        return 0.0
    return 1.0 if final_response.answer == task.answer else 0.0
