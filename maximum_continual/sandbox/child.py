"""The sandbox process: smolagents' ``LocalPythonExecutor`` behind a pipe, one process per agent run.

Started by :mod:`~maximum_continual.sandbox.process` as ``python -I -c <bootstrap>``; it reads its
setup, sets its limits (``limits.py``, ``nofork.py``), imports smolagents under them, then runs
each ``("run", code, limit_s)`` it receives and answers ``("done", logs, output_repr, final_blob,
error, timed_out)``. Variables live in the interpreter's state between runs.

Tools are stubs with the tools' names: a call sends ``("tool", name, (args, kwargs))`` to the app
and waits for ``("result", value)`` or ``("raise", type_name, text)``. The tool objects never exist
here, so nothing the code reaches leads to them.

The step limit is soft here and hard in the app: SIGALRM at the limit raises :class:`StepTimeout`
(a ``BaseException``, which neither smolagents nor the code's ``except Exception`` catches) and the
interpreter keeps its state; code stuck inside one C call (``10**10**9``) never sees the signal, and
the app kills the process a grace period later.
"""

from __future__ import annotations

import builtins
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from maximum_continual.sandbox import wire
from maximum_continual.sandbox.limits import SandboxLimits, apply_limits
from maximum_continual.sandbox.nofork import block_new_processes
from maximum_continual.sandbox.outcome import FinalCall, timeout_error, truncate, unsendable_error

__all__ = ["StepTimeout", "ToolError", "main"]


class StepTimeout(BaseException):
    """The step's time is up (raised by the SIGALRM handler)."""


class ToolError(Exception):
    """A tool failed in the app with an exception that is not a builtin one."""


def _final_answer(*args: Any, **kwargs: Any) -> FinalCall:
    return FinalCall(args, kwargs)


def _tool_exception(type_name: str, text: str, args_blob: Any) -> Exception:
    """The tool's exception as the code would have seen it in-process, when it is a builtin type."""
    cls = getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(*(wire.loads(args_blob) if isinstance(args_blob, bytes) else (text,)))
        except Exception:  # arguments that are not plain data, or a constructor that wants others
            pass
    return ToolError(f"{type_name}: {text}")


class _Sandbox:
    def __init__(self, channel: wire.Channel, tools: dict[str, str], imports: list[str], max_print_chars: int) -> None:
        from smolagents.local_python_executor import MAX_OPERATIONS, LocalPythonExecutor

        self._channel = channel
        self._max_chars = max_print_chars
        self._max_operations = MAX_OPERATIONS
        self._py = LocalPythonExecutor(
            additional_authorized_imports=imports, max_print_outputs_length=max_print_chars, timeout_seconds=None
        )
        stubs: dict[str, Callable[..., Any]] = {name: self._stub(name, doc) for name, doc in tools.items()}
        self._py.send_tools({**stubs, "final_answer": _final_answer})
        signal.signal(signal.SIGALRM, self._on_alarm)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        counter = self._py.state.get("_operations_count")
        if isinstance(counter, dict):  # code that swallows the exception (a finally:) stops at its next node
            counter["counter"] = self._max_operations
        raise StepTimeout

    def _stub(self, name: str, doc: str) -> Callable[..., Any]:
        def tool(*args: Any, **kwargs: Any) -> Any:
            return self._call_tool(name, args, kwargs)

        tool.__name__ = tool.__qualname__ = name
        tool.__doc__ = doc
        return tool

    def _call_tool(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            blob = wire.dumps((args, kwargs))
        except wire.WireError as exc:
            raise TypeError(unsendable_error(f"the arguments of {name}()", exc)) from None
        # A timeout must not cut a message in half: the alarm waits until the reply is in.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            self._channel.send("tool", name, blob)
            reply = self._channel.recv()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if reply[0] == "result":
            try:
                return wire.loads(reply[1])
            except wire.WireError as exc:
                raise TypeError(unsendable_error(f"the result of {name}()", exc)) from None
        raise _tool_exception(str(reply[1]), str(reply[2]), reply[3])

    def _final(self, value: Any) -> tuple[bytes | None, str | None]:
        call = value if isinstance(value, FinalCall) else FinalCall((value,), {})
        try:
            blob = wire.dumps((call.args, call.kwargs))
            wire.loads(blob)  # what the app would refuse, refused here with the same words
        except wire.WireError as exc:
            return None, "TypeError: " + unsendable_error("final_answer's arguments", exc)
        return blob, None

    def run(self, code: str, limit_s: float) -> tuple[Any, ...]:
        output = final = error = None
        timed_out = False
        signal.setitimer(signal.ITIMER_REAL, limit_s)
        try:
            try:
                result = self._py(code)
                if result.is_final_answer:
                    final, error = self._final(result.output)
                elif result.output is not None:
                    output = truncate(repr(result.output), self._max_chars)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except StepTimeout:
            error, timed_out = timeout_error(limit_s), True
        except BaseException as exc:  # InterpreterError, MemoryError, a raised SystemExit: all the code's own
            error = f"{type(exc).__name__}: {exc}"
        logs = truncate(str(self._py.state.get("_print_outputs", "")), self._max_chars)
        return ("done", logs, output, final, error, timed_out)

    def serve(self) -> None:
        while True:
            try:
                message = self._channel.recv()
            except (EOFError, OSError):
                return  # the app closed the pipe: this run is over
            if message[0] == "run":
                self._channel.send(*self.run(str(message[1]), float(message[2])))


def main(fd: int) -> None:
    channel = wire.Channel(Connection(fd))
    kind, setup = channel.recv()
    if kind != "init":
        raise SystemExit(f"sandbox: expected the setup, got {kind!r}")
    apply_limits(SandboxLimits(memory_mib=setup["memory_mib"], cpu_s=setup["cpu_s"]))
    why_not = block_new_processes()
    if why_not is not None:
        print(f"sandbox: {why_not}; new processes are refused by the import deny list only", file=sys.stderr)
    # smolagents is imported under the limits, so a memory limit too small to run it fails here, loudly
    sandbox = _Sandbox(channel, dict(setup["tools"]), list(setup["imports"]), int(setup["max_print_chars"]))
    channel.send("ready")
    sandbox.serve()
