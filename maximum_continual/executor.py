"""The sandbox: smolagents' ``LocalPythonExecutor`` with the app's tools, the authorized imports and a
per-step time limit.

What the agent's code may do: call the tools as functions, import the base modules smolagents allows
plus ``additional_authorized_imports``, and keep variables between steps. An unauthorized import,
``open``/file or network access without an authorized module, an exception, or a step that runs past
``step_timeout_s`` each come back as a :class:`StepOutcome` with an ``error`` text for the model to
read; nothing the code does raises into the app.

smolagents' own timeout waits for the worker thread before raising (its ``ThreadPoolExecutor``
context joins it), so an endless loop would hang the app. We run each step in a daemon thread and,
past the limit, set the interpreter's operation counter to its maximum: the interpreter checks it
before every AST node, so a looping step stops at its next node. Code blocked inside one call
(``time.sleep(10**9)``) cannot be interrupted in-process; its thread is abandoned (daemon).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smolagents.local_python_executor import MAX_OPERATIONS, LocalPythonExecutor

__all__ = ["FinalCall", "SandboxExecutor", "StepOutcome"]


@dataclass(frozen=True, slots=True)
class FinalCall:
    """The arguments the code passed to ``final_answer`` (validated by the agent loop, not here)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepOutcome:
    output: Any
    logs: str
    final: FinalCall | None = None
    error: str | None = None
    timed_out: bool = False


def _final_answer(*args: Any, **kwargs: Any) -> FinalCall:
    return FinalCall(args, kwargs)


class SandboxExecutor:
    """One agent run's interpreter: state persists across :meth:`run` calls."""

    def __init__(
        self,
        tools: Sequence[Any],
        authorized_imports: Sequence[str],
        *,
        step_timeout_s: float,
        max_print_chars: int = 4000,
    ) -> None:
        self.step_timeout_s = step_timeout_s
        self._py = LocalPythonExecutor(
            additional_authorized_imports=list(authorized_imports),
            max_print_outputs_length=max_print_chars,
            timeout_seconds=None,  # ours below: theirs cannot stop a loop (see the module docstring)
        )
        named = {tool.name: tool for tool in tools}
        if "final_answer" in named:
            raise ValueError("a tool may not be named final_answer: the agent loop owns it")
        self._py.send_tools({**named, "final_answer": _final_answer})

    def run(self, code: str) -> StepOutcome:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = self._py(code)
            except BaseException as exc:  # InterpreterError and anything a tool raised
                box["error"] = exc

        thread = threading.Thread(target=target, name="mc-sandbox-step", daemon=True)
        thread.start()
        thread.join(self.step_timeout_s)
        if thread.is_alive():
            counter = self._py.state.get("_operations_count")
            if isinstance(counter, dict):
                counter["counter"] = MAX_OPERATIONS  # the interpreter stops at its next AST node
            thread.join(1.0)
            return StepOutcome(
                None,
                self._logs(),
                error=f"TimeoutError: the code ran longer than the per-step limit of {self.step_timeout_s:g} s "
                "and was stopped. Avoid endless loops and long waits.",
                timed_out=True,
            )
        if "error" in box:
            exc = box["error"]
            return StepOutcome(None, self._logs(), error=f"{type(exc).__name__}: {exc}")
        result = box["result"]
        if result.is_final_answer:
            final = result.output if isinstance(result.output, FinalCall) else FinalCall((result.output,), {})
            return StepOutcome(result.output, str(result.logs), final=final)
        return StepOutcome(result.output, str(result.logs))

    def _logs(self) -> str:
        return str(self._py.state.get("_print_outputs", ""))
