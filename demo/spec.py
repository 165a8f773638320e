"""What the live loop needs to know about a task: :class:`TaskSpec`.

The loop (:func:`demo.loop.run_live_loop`) is the same for every task: it asks the spec for new
prompts, runs each once through ``SDK.predict`` on the live adapter, scores the final answer with the
spec's reward and sends it with ``update``. A benchmark brings another task by writing another spec;
the demo's is :class:`demo.tasks.ArithmeticTask`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

__all__ = ["TaskSpec", "TaskT"]

TaskT = TypeVar("TaskT")


class TaskSpec(Protocol[TaskT]):
    """A task for the live loop. ``TaskT`` is the spec's own prompt type (what its reward needs)."""

    @property
    def name(self) -> str:
        """Short name: the rewards' ``source`` and the label in results."""
        ...

    @property
    def final_answer_model(self) -> type[BaseModel]:
        """The pydantic model ``final_answer(...)`` must validate as."""
        ...

    @property
    def max_steps(self) -> int:
        """Agent steps per prediction (each step is one more sequence for the trainer)."""
        ...

    @property
    def tools(self) -> Sequence[Any]:
        """The app's tools (``maximum_continual.Tool`` instances), callable from the agent's code."""
        ...

    @property
    def authorized_imports(self) -> Sequence[str]:
        """Modules the agent's code may import beyond the executor's defaults."""
        ...

    def system_prompt(self) -> str:
        """The system message of every prediction."""
        ...

    def prompts(self, seed: int) -> Iterator[TaskT]:
        """An endless stream of prompts, each new (never repeated), the same for a given seed."""
        ...

    def user_message(self, task: TaskT) -> str:
        """The user message that asks ``task``."""
        ...

    def reward(self, task: TaskT, final_response: BaseModel | None) -> float:
        """The app's reward for the agent's final answer (``None``: the run gave no valid answer)."""
        ...
