"""``SandboxExecutor``: an agent run's code in its own process (``child.py``), its tools in the app.

One process per executor, so per agent run (``spawn.py``); variables persist across its steps. It
starts in the constructor and imports smolagents while the model writes its first step; :meth:`run`
waits for it (``startup_timeout_s``).

A step that outlives ``step_timeout_s`` is stopped inside the process, state kept (loops, sleeps and
``10**10**9`` all see the signal). One that does not stop within ``KILL_GRACE_S`` more (one long C
call that never checks for signals, like ``sum(range(10**12))``) is SIGKILLed; so is a process that
breaks the protocol. Then the step's error tells the model its variables are lost, and a fresh
process starts at once, warming up while the model writes the next step: the run goes on. Time
spent in the app's tools counts toward the step's limit (as in-process) but not toward the kill.

Thread safety: one :meth:`run` at a time; :meth:`close` may come from any thread (the agent loop's,
while a step runs in a worker thread) and kills the process at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from maximum_continual.sandbox import wire
from maximum_continual.sandbox.imports import check_authorized_imports
from maximum_continual.sandbox.limits import SandboxLimits
from maximum_continual.sandbox.outcome import (
    FinalCall,
    StepOutcome,
    ValueRepr,
    died_error,
    killed_error,
    unsendable_error,
)
from maximum_continual.sandbox.spawn import SandboxProcess
from schemas.errors import SandboxError

__all__ = ["KILL_GRACE_S", "SandboxExecutor", "tools_by_name"]

#: how long past its limit a step may take to stop by itself before its process is killed
KILL_GRACE_S = 1.0

_BROKE = StepOutcome(None, "", error=died_error("it stopped following the sandbox's protocol"))


def tools_by_name(tools: Sequence[Any]) -> dict[str, Any]:
    """The app's tools by name (``final_answer`` is the agent loop's own)."""
    named = {str(tool.name): tool for tool in tools}
    if "final_answer" in named:
        raise ValueError("a tool may not be named final_answer: the agent loop owns it")
    return named


class SandboxExecutor:
    """One agent run's interpreter in its own process: state persists across :meth:`run` calls.

    Raises :class:`~maximum_continual.sandbox.imports.UnsafeImportError` at construction when
    ``authorized_imports`` names a denied module and ``allow_unsafe_imports`` is false. :meth:`run`
    never raises for what the code does; only a sandbox process that cannot start at all raises
    :class:`~schemas.errors.SandboxError`. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        tools: Sequence[Any],
        authorized_imports: Sequence[str],
        *,
        step_timeout_s: float,
        max_print_chars: int = 4000,
        limits: SandboxLimits | None = None,
        allow_unsafe_imports: bool = False,
        startup_timeout_s: float = 60.0,
    ) -> None:
        imports = check_authorized_imports(authorized_imports, allow_unsafe=allow_unsafe_imports)
        self.step_timeout_s = step_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self._tools = tools_by_name(tools)
        limits = limits or SandboxLimits()
        self._setup = {
            "tools": {name: str(getattr(tool, "description", "") or "") for name, tool in self._tools.items()},
            "imports": imports,
            "max_print_chars": max_print_chars,
            "memory_mib": limits.memory_mib,
            "cpu_s": limits.cpu_s,
        }
        self._guard = threading.Lock()
        self._closed = False
        self._busy = False
        self._child: SandboxProcess | None = SandboxProcess(self._setup)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The current sandbox process's id (None once closed)."""
        child = self._child
        return child.proc.pid if child is not None else None

    def start(self) -> float:
        """Wait until the sandbox process is ready; its startup time in seconds."""
        with self._guard:
            if self._closed:
                raise SandboxError("the sandbox is closed")
            child = self._child = self._child or SandboxProcess(self._setup)
        child.wait_ready(self.startup_timeout_s)
        assert child.ready_s is not None
        return child.ready_s

    def close(self) -> None:
        """Kill the sandbox process; a step running in another thread ends with an error."""
        with self._guard:
            self._closed = True
            child, self._child = self._child, None
            busy = self._busy
        if child is not None:
            child.kill()
            if not busy:  # else the step's thread releases the pipe it is reading
                child.release()

    def __enter__(self) -> SandboxExecutor:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:  # an executor dropped without close(): its process goes with it
        with contextlib.suppress(Exception):
            self.close()

    # -- steps ----------------------------------------------------------------------------------

    def run(self, code: str) -> StepOutcome:
        with self._guard:
            if self._closed:
                return StepOutcome(None, "", error="SandboxError: the sandbox is closed")
            if self._busy:
                raise RuntimeError("SandboxExecutor.run: one step at a time")
            if self._child is None:
                self._child = SandboxProcess(self._setup)
            child = self._child
            self._busy = True
        broken = True
        try:
            try:
                child.wait_ready(self.startup_timeout_s)
            except SandboxError:
                if self._closed:  # closed while it started: not a failure to report
                    return StepOutcome(None, "", error="SandboxError: the sandbox is closed")
                raise
            outcome, broken = self._step(child, code)
            return outcome
        finally:
            with self._guard:
                self._busy = False
                if broken or self._closed:
                    child.kill()
                    child.release()
                    if self._child is child:
                        self._child = None
                        if child.ready_s is not None and not self._closed:
                            self._respawn()

    def _respawn(self) -> None:
        """A fresh process for the next step, warming up while the model writes it (under the guard)."""
        try:
            self._child = SandboxProcess(self._setup)
        except SandboxError:
            self._child = None  # the next step tries again, and raises if it still cannot

    def _step(self, child: SandboxProcess, code: str) -> tuple[StepOutcome, bool]:
        """The step's outcome, and whether the process must be replaced."""
        channel = child.channel
        limit = self.step_timeout_s
        try:
            channel.send("run", code, limit)
            hard = time.monotonic() + limit + KILL_GRACE_S
            while True:
                if not channel.poll(hard - time.monotonic()):
                    return StepOutcome(None, "", error=killed_error(limit), timed_out=True), True
                message = channel.recv()
                if message[0] == "tool" and len(message) == 3:
                    t0 = time.monotonic()
                    channel.send(*self._call_tool(message[1], message[2]))
                    hard += time.monotonic() - t0  # the tool's time is the app's, not the code's
                elif message[0] == "done" and len(message) == 6:
                    outcome = self._outcome(*message[1:])
                    return (outcome, False) if outcome is not None else (_BROKE, True)
                else:
                    return _BROKE, True
        except wire.WireError:
            return _BROKE, True
        except (EOFError, OSError):  # it died, or sent more than MAX_MESSAGE_BYTES
            return StepOutcome(None, "", error=died_error(child.death())), True

    def _call_tool(self, name: Any, blob: Any) -> tuple[Any, ...]:
        tool = self._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return ("raise", "NameError", f"no tool named {name!r}", None)
        try:
            args, kwargs = wire.loads(blob) if isinstance(blob, bytes) else (None, None)
            if not isinstance(args, tuple) or not isinstance(kwargs, dict):
                raise wire.WireError("not (args, kwargs)")
        except (wire.WireError, TypeError, ValueError) as exc:
            return ("raise", "TypeError", unsendable_error(f"the arguments of {name}()", exc), None)
        try:
            result = tool(*args, **kwargs)
        except Exception as exc:  # the tool's failure is the code's to handle, as in-process
            try:
                exc_args: bytes | None = wire.dumps(exc.args)
            except wire.WireError:
                exc_args = None
            return ("raise", type(exc).__name__, str(exc), exc_args)
        try:
            return ("result", wire.dumps(result))
        except wire.WireError as exc:
            return ("raise", "TypeError", unsendable_error(f"the result of {name}()", exc), None)

    def _outcome(self, logs: Any, output: Any, final_blob: Any, error: Any, timed_out: Any) -> StepOutcome | None:
        """The step's outcome from the child's fields; None when they are not what the protocol says."""
        if not isinstance(logs, str) or not isinstance(output, str | None) or not isinstance(error, str | None):
            return None
        final = None
        if isinstance(final_blob, bytes):
            try:
                args, kwargs = wire.loads(final_blob)
                final = FinalCall(tuple(args), dict(kwargs))
            except (wire.WireError, TypeError, ValueError) as exc:
                error = "TypeError: " + unsendable_error("final_answer's arguments", exc)
        shown = ValueRepr(output) if output is not None else None
        return StepOutcome(shown, logs, final=final, error=error, timed_out=bool(timed_out))
