"""The tasks of ``mc bench learn`` beside the demo's arithmetic: a shop whose prices only a tool knows
(several agent steps) and questions about short lists (Python's list operations).

Each is a :class:`~demo.spec.TaskSpec` like :class:`demo.tasks.ArithmeticTask`, with its prompts as
:class:`demo.tasks.Task`: a seeded stream that never repeats a prompt (:func:`demo.tasks.distinct`),
an integer answer through :class:`demo.tasks.FinalAnswer`, the reward :func:`demo.tasks.reward` (1.0
for the right number, else 0.0), and a short system prompt with worked examples in the SDK's
in-format style (the 135M model copies what it sees).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from demo.tasks import FinalAnswer, Task, distinct, reward
from maximum_continual import Tool
from maximum_continual.system_prompt import render_example
from maximum_continual.tools import tool_signature

__all__ = ["BENCH_TASKS", "PRICES", "ListTask", "PriceTool", "ShopTask", "make_task"]

Turns = Sequence[tuple[str, str]]


def _code(*lines: str) -> str:
    return "```python\n" + "\n".join(lines) + "\n```"


class _Templated:
    """What the benchmark's own tasks share: prompts made by ``make`` from a seeded generator, the
    question as the user message, the demo's integer reward, the system prompt from ``intro``,
    the tools' signatures and ``examples``."""

    name: str
    kinds: Sequence[str]
    tools: Sequence[Any]
    intro: ClassVar[str]
    examples: ClassVar[Sequence[Turns]]

    def make(self, rng: random.Random) -> Task:
        raise NotImplementedError

    def system_prompt(self) -> str:
        parts = [self.intro]
        if self.tools:
            parts += ["Functions you can call:", *(tool_signature(t) for t in self.tools)]
        return "\n".join([*parts, *(render_example(turns) for turns in self.examples)])

    def prompts(self, seed: int) -> Iterator[Task]:
        return distinct(self.make, f"{self.name}:{seed}")

    def user_message(self, task: Task) -> str:
        return task.question

    def reward(self, task: Task, final_response: BaseModel | None) -> float:
        return reward(task, final_response)


# -- the shop: prices only a tool knows --------------------------------------------------------------

#: items asked about (regular plurals: name + "s")
_SHOP_ITEMS = (
    "pen", "mug", "lamp", "towel", "kettle", "candle", "notebook", "plate",
    "bottle", "pillow", "basket", "spoon", "brush", "clock", "bowl", "blanket",
    "chair", "shirt", "sock", "jacket", "bucket", "ladder", "hammer", "pencil",
)  # fmt: skip
#: items of the worked examples only (never asked), with the prices the examples show
_EXAMPLE_PRICES = {"cup": 4, "hat": 9, "fork": 3}


def _price_table() -> dict[str, int]:
    rng = random.Random("shop-prices")  # the app's catalogue: the same on every machine and seed
    return {**{item: rng.randint(2, 19) for item in _SHOP_ITEMS}, **_EXAMPLE_PRICES}


PRICES = _price_table()


class PriceTool(Tool):
    """``lookup_price(item)``: the shop's price of one item in dollars (singular or plural name)."""

    name = "lookup_price"
    description = "Returns the price in dollars of one item of the shop, e.g. lookup_price(item='cup')."
    inputs = {"item": {"type": "string", "description": "the item's name, e.g. 'cup'"}}
    output_type = "integer"

    def forward(self, item: str) -> int:
        key = str(item).strip().lower()
        for name in (key, key.removesuffix("s")):
            if name in PRICES:
                return PRICES[name]
        raise KeyError(f"the shop has no item {item!r}")


@dataclass(frozen=True)
class ShopTask(_Templated):
    """Questions about the cost of items whose prices only ``lookup_price`` knows: the agent must
    call the tool and compute with its output (2 agent steps allowed: look up and print, then answer).

    The worked examples put the two-step one first: with the one-step example first, the model
    copied the two-step example's last turn (no tool call) and solved 0 of 24."""

    name: str = "shop"
    kinds: Sequence[str] = ("one",)  # "two" (two items) is harder: the base model solved 0 of 49
    final_answer_model: type[BaseModel] = FinalAnswer
    max_steps: int = 2
    tools: Sequence[Any] = field(default_factory=lambda: (PriceTool(),))
    authorized_imports: Sequence[str] = ()

    intro: ClassVar[str] = (
        "You solve tasks by writing Python code in one ```python block. "
        "Prices are not in the question: call lookup_price to get them. "
        "The code must end with final_answer(answer=...), where answer is an integer."
    )
    examples: ClassVar[Sequence[Turns]] = (
        (
            ("user", "How much do 2 hats and 3 forks cost together?"),
            (
                "assistant",
                _code("hat = lookup_price(item='hat')", "fork = lookup_price(item='fork')", "print(hat, fork)"),
            ),
            ("user", "Observation:\nExecution logs:\n9 3"),
            ("assistant", _code("total = 2 * hat + 3 * fork", "print(total)", "final_answer(answer=int(total))")),
        ),
        (
            ("user", "How much do 5 cups cost?"),
            (
                "assistant",
                _code("price = lookup_price(item='cup')", "print(price)", "final_answer(answer=int(5 * price))"),
            ),
        ),
    )

    def make(self, rng: random.Random) -> Task:
        kind = rng.choice(self.kinds)
        a, b = rng.sample(_SHOP_ITEMS, 2)
        if kind == "one":  # 24 items x 29 quantities: 696 questions, more than a run asks
            n = rng.randint(2, 30)
            return Task(f"How much do {n} {a}s cost?", n * PRICES[a], kind)
        if kind == "two":
            n, m = rng.randint(2, 6), rng.randint(2, 6)
            return Task(f"How much do {n} {a}s and {m} {b}s cost together?", n * PRICES[a] + m * PRICES[b], kind)
        raise ValueError(f"unknown shop question kind {kind!r}")


# -- short lists ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListTask(_Templated):
    """Questions about a short list of numbers: its last, largest or second smallest number (the base
    model solves few: the rare task of the benchmark, where learning must come from few positives)."""

    name: str = "lists"
    kinds: Sequence[str] = ("last", "largest", "second_smallest")  # also: "sum_even"
    final_answer_model: type[BaseModel] = FinalAnswer
    max_steps: int = 1
    tools: Sequence[Any] = ()
    authorized_imports: Sequence[str] = ()

    intro: ClassVar[str] = (
        "You solve tasks by writing Python code in one ```python block. "
        "The code must end with final_answer(answer=...), where answer is an integer."
    )
    examples: ClassVar[Sequence[Turns]] = (
        (
            ("user", "What is the first number of the list [7, 2, 9]?"),
            (
                "assistant",
                _code("numbers = [7, 2, 9]", "first = numbers[0]", "print(first)", "final_answer(answer=first)"),
            ),
        ),
        (
            ("user", "What is the smallest number of the list [8, 3, 6, 5]?"),
            (
                "assistant",
                _code("numbers = [8, 3, 6, 5]", "low = min(numbers)", "print(low)", "final_answer(answer=low)"),
            ),
        ),
    )

    def make(self, rng: random.Random) -> Task:
        kind = rng.choice(self.kinds)
        nums = [rng.randint(1, 99) for _ in range(rng.randint(4, 7))]
        shown = "[" + ", ".join(map(str, nums)) + "]"
        answers = {
            "last": ("the last number", nums[-1]),
            "largest": ("the largest number", max(nums)),
            "second_smallest": ("the second smallest number", sorted(nums)[1]),
            "sum_even": ("the sum of the even numbers", sum(x for x in nums if x % 2 == 0)),
        }
        if kind not in answers:
            raise ValueError(f"unknown list question kind {kind!r}")
        what, answer = answers[kind]
        return Task(f"What is {what} of the list {shown}?", answer, kind)


#: the benchmark's tasks by name (what ``--tasks`` chooses from), in the order they run
BENCH_TASKS: tuple[str, ...] = ("arithmetic", "shop", "lists")


def make_task(name: str) -> Any:
    """The task spec called ``name`` (one of :data:`BENCH_TASKS`)."""
    from demo.tasks import ArithmeticTask

    specs: dict[str, Callable[[], Any]] = {"arithmetic": ArithmeticTask, "shop": ShopTask, "lists": ListTask}
    if name not in specs:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(BENCH_TASKS)}")
    return specs[name]()
