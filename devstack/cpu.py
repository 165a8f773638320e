"""Which dtype vLLM should compute in on this CPU: a pure rule over /proc/cpuinfo's flags.

vLLM-CPU serves a bf16 checkpoint in bf16 unless told otherwise. Measured (32 concurrent chats of 128
generated tokens, SmolLM2-135M, 2 cores):

- AMD EPYC, AVX2 only: bf16 is emulated; 19.5 tokens/s against 65 in float32 (LoRA on).
- Intel Xeon (family 6, model 207) under KVM with AVX512-BF16 but no AMX visible: float32 is still
  faster: 71-73 against 63-66 tokens/s with LoRA on, 192-200 against 170-176 without, 147 against 140
  with devstack's grouped LoRA ops. AVX512-BF16 only adds bf16 dot products and conversions; the
  GEMMs of a model this small do not gain enough from half the bytes to pay for the conversions.
- With AMX (``amx_bf16``: Sapphire Rapids and later, where the hypervisor exposes it) oneDNN runs bf16
  GEMMs on the tile unit; vLLM's CPU guide recommends bf16 there. Not measured by us: no machine here
  shows AMX.

So: bfloat16 where the CPU has AMX-BF16, float32 everywhere else; ``MC_VLLM_DTYPE`` overrides.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

__all__ = ["BF16_FLAGS", "VllmDtype", "choose_dtype", "cpu_flags", "prefers_bf16"]

VllmDtype = Literal["auto", "float32", "bfloat16", "float16"]

#: /proc/cpuinfo flags with which bf16 beats float32 in vLLM-CPU (see the module's docstring)
BF16_FLAGS = frozenset({"amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The flags of the first CPU in ``cpuinfo`` (empty where there is none: not Linux, not x86)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def prefers_bf16(flags: Iterable[str] | str) -> bool:
    """True when the flags name a unit on which vLLM computes bf16 faster than float32 (AMX-BF16)."""
    names = flags.split() if isinstance(flags, str) else flags
    return not BF16_FLAGS.isdisjoint(names)


def choose_dtype(flags: Iterable[str] | str, override: VllmDtype = "auto") -> str:
    """vLLM's ``--dtype``: ``override`` unless it is ``auto``, else from the CPU's flags."""
    if override != "auto":
        return override
    return "bfloat16" if prefers_bf16(flags) else "float32"
