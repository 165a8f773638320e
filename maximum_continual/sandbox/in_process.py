"""``InProcessExecutor``: the former executor, smolagents' ``LocalPythonExecutor`` in the app's own
process. Kept for ``mc bench sandbox`` (the baseline) and for trusted code only; the agent loop uses
the process sandbox.

What it cannot do, and why the process sandbox exists: code blocked inside one call
(``time.sleep(10**9)``, ``10**10**9``) cannot be interrupted, so its thread is abandoned (daemon)
and keeps running; a memory bomb takes the app's memory; tool objects are reachable from the code.
An endless loop does stop: past the limit the interpreter's operation counter is set to its maximum,
and the interpreter checks it before every AST node. (smolagents' own timeout cannot be used: its
``ThreadPoolExecutor`` context joins the worker thread before raising, so a loop would hang the app.)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from smolagents.local_python_executor import MAX_OPERATIONS, LocalPythonExecutor

from maximum_continual.sandbox.imports import check_authorized_imports
from maximum_continual.sandbox.outcome import FinalCall, StepOutcome, timeout_error
from maximum_continual.sandbox.process import tools_by_name

__all__ = ["InProcessExecutor"]


def _final_answer(*args: Any, **kwargs: Any) -> FinalCall:
    return FinalCall(args, kwargs)


class InProcessExecutor:
    """One agent run's interpreter in this process: state persists across :meth:`run` calls."""

    def __init__(
        self,
        tools: Sequence[Any],
        authorized_imports: Sequence[str],
        *,
        step_timeout_s: float,
        max_print_chars: int = 4000,
        allow_unsafe_imports: bool = False,
    ) -> None:
        imports = check_authorized_imports(authorized_imports, allow_unsafe=allow_unsafe_imports)
        self.step_timeout_s = step_timeout_s
        self._py = LocalPythonExecutor(
            additional_authorized_imports=imports,
            max_print_outputs_length=max_print_chars,
            timeout_seconds=None,  # ours below: theirs cannot stop a loop (see the module docstring)
        )
        self._py.send_tools({**tools_by_name(tools), "final_answer": _final_answer})

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
            return StepOutcome(None, self._logs(), error=timeout_error(self.step_timeout_s), timed_out=True)
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

    def close(self) -> None:
        """Nothing to release (a thread stuck in one call cannot be stopped; see the module docstring)."""

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
