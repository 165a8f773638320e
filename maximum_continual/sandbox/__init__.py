"""The sandbox that runs the agent's code.

:class:`SandboxExecutor` (the default, ``process.py``) runs an agent run's code in its own process
(started by ``spawn.py``, running ``child.py``) under resource limits (``limits.py``, ``nofork.py``),
with the app's tools called back over a pipe of plain data (``wire.py``); the imports the app
authorizes are checked against a deny list (``imports.py``). :class:`InProcessExecutor` is the former
in-process executor, kept as the benchmark's baseline. Both answer each step with a
:class:`StepOutcome` (``outcome.py``).
"""

from maximum_continual.sandbox.imports import DENIED_MODULES, UnsafeImportError, check_authorized_imports
from maximum_continual.sandbox.in_process import InProcessExecutor
from maximum_continual.sandbox.limits import SandboxLimits
from maximum_continual.sandbox.outcome import FinalCall, StepOutcome, ValueRepr
from maximum_continual.sandbox.process import SandboxExecutor

__all__ = [
    "DENIED_MODULES",
    "FinalCall",
    "InProcessExecutor",
    "SandboxExecutor",
    "SandboxLimits",
    "StepOutcome",
    "UnsafeImportError",
    "ValueRepr",
    "check_authorized_imports",
]
