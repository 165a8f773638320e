"""The resource limits of a sandbox process, set in that process before it runs any agent code.

- ``RLIMIT_AS`` (``memory_mib``): a 50 GB list or ``bytearray`` fails with ``MemoryError`` in the
  step instead of swapping the machine. Python and smolagents take about 70 MiB of address space
  after import (measured: VmPeak 67 MB; pydantic is not imported), so the floor is 256 MiB.
- ``RLIMIT_CPU`` (``cpu_s``, per sandbox process, so per agent run unless the process is replaced):
  past it the kernel sends SIGXCPU, which kills the process; the parent reports it and starts a fresh
  one for the next step. The wall-clock limit of each step is the parent's job (``process.py``).
- ``RLIMIT_NPROC=0``: no new processes (nor threads). The kernel does not apply it to root, so
  :func:`~maximum_continual.sandbox.nofork.block_new_processes` also installs a seccomp filter, and
  the import deny list keeps ``os``/``subprocess``/``multiprocessing`` away from the code.
- ``RLIMIT_CORE=0``: a killed sandbox leaves no core file.

Only the standard library here: the sandbox process imports this before the limits exist.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

__all__ = ["DEFAULT_CPU_S", "DEFAULT_MEMORY_MIB", "MIN_MEMORY_MIB", "SandboxLimits", "apply_limits"]

DEFAULT_MEMORY_MIB = 1024
DEFAULT_CPU_S = 60
MIN_MEMORY_MIB = 256


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Address space (MiB) and CPU seconds of one sandbox process."""

    memory_mib: int = DEFAULT_MEMORY_MIB
    cpu_s: int = DEFAULT_CPU_S

    def __post_init__(self) -> None:
        if self.memory_mib < MIN_MEMORY_MIB:
            raise ValueError(f"memory_mib must be at least {MIN_MEMORY_MIB} (Python and smolagents need it)")
        if self.cpu_s < 1:
            raise ValueError("cpu_s must be at least 1")


def _lower(kind: int, soft: int, hard: int) -> None:
    """Set a limit, never above the hard limit the process already has (raising it needs privileges)."""
    _, current_hard = resource.getrlimit(kind)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    resource.setrlimit(kind, (soft, hard))


def apply_limits(limits: SandboxLimits) -> None:
    """Set this process's limits (call it in the sandbox process, never in the app)."""
    _lower(resource.RLIMIT_CORE, 0, 0)
    address_space = limits.memory_mib * 1024 * 1024
    _lower(resource.RLIMIT_AS, address_space, address_space)
    # SIGXCPU at the soft limit kills the process; the hard limit's SIGKILL is the backstop
    _lower(resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 1)
    _lower(resource.RLIMIT_NPROC, 0, 0)
