"""Where the executor used to live; it is now the :mod:`maximum_continual.sandbox` package.

These names stay importable from here for code written against the old module.
"""

from maximum_continual.sandbox import FinalCall, InProcessExecutor, SandboxExecutor, StepOutcome

__all__ = ["FinalCall", "InProcessExecutor", "SandboxExecutor", "StepOutcome"]
