"""What one step of agent code produced (:class:`StepOutcome`), and the error texts the model reads.

Shared by both executors and by the sandbox process, so it imports nothing heavy: the child loads
it before the resource limits are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "FinalCall",
    "StepOutcome",
    "ValueRepr",
    "died_error",
    "killed_error",
    "timeout_error",
    "truncate",
    "unsendable_error",
]


@dataclass(frozen=True, slots=True)
class FinalCall:
    """The arguments the code passed to ``final_answer`` (validated by the agent loop, not here)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ValueRepr:
    """A value that stayed in the sandbox process, known by its ``repr`` (computed and truncated there).

    Values do not cross back whole: a value built to be expensive to print (a list that holds itself
    a million times) must cost the sandbox its step limit, not the app its CPU.
    """

    text: str

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """``output``: the value of the code's last line (a :class:`ValueRepr` from the process sandbox);
    ``error``: set when the step failed (the model reads it); ``timed_out``: the step hit its limit."""

    output: Any
    logs: str
    final: FinalCall | None = None
    error: str | None = None
    timed_out: bool = False


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... (truncated: {len(text) - limit} more characters)"


def timeout_error(limit_s: float) -> str:
    return (
        f"TimeoutError: the code ran longer than the per-step limit of {limit_s:g} s and was stopped. "
        "Avoid endless loops and long waits."
    )


def killed_error(limit_s: float) -> str:
    return (
        f"TimeoutError: the code ran longer than the per-step limit of {limit_s:g} s and did not stop, so its "
        "process was killed. Variables, functions and imports from earlier steps are lost: define them again "
        "if you need them. Avoid endless loops, long waits and huge numbers."
    )


def died_error(reason: str) -> str:
    return (
        f"SandboxError: the process running the code died ({reason}). Variables, functions and imports from "
        "earlier steps are lost: define them again if you need them."
    )


def unsendable_error(what: str, reason: object) -> str:
    """``what`` (e.g. "the arguments of add()") could not cross between the sandbox and the app."""
    return (
        f"{what} cannot be passed between the sandbox and the app ({reason}). Use plain values: str, int, float, "
        "bool, None, datetime, Decimal, and lists, tuples, dicts or sets of them."
    )
