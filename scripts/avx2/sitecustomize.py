"""Loaded by ``scripts/as-avx2`` (first on PYTHONPATH): torch reports no AVX-512, AVX512-BF16 or AMX.

The issues' target machine is a 2-core AVX2-only CPU. On a bigger CPU, environment variables hold
torch's own kernels (``ATEN_CPU_CAPABILITY``), oneDNN and MKL to AVX2, but two choices are made from
what torch says the hardware has: vLLM-CPU loads its AVX-512 (or AVX512-BF16) kernel library instead of
``_C_AVX2`` (``vllm/platforms/cpu.py: import_kernels``), and the trainer turns on bf16 autocast
(``trainer/model.py``). Here those probes answer False, so every process takes the AVX2 paths. The
patch is applied when ``torch.cpu`` is imported: processes that never import torch pay nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

#: torch.cpu's hardware probes that must answer False on an AVX2-only CPU
_PROBES = (
    "_is_avx512_supported",
    "_is_vnni_supported",
    "_is_avx512_bf16_supported",
    "_is_amx_tile_supported",
    "_is_amx_fp16_supported",
)


def _no() -> bool:
    return False


class _HideWideIsa(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torch.cpu":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader: Any = spec.loader
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            for name in _PROBES:
                if hasattr(module, name):
                    setattr(module, name, _no)

        loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _HideWideIsa())
