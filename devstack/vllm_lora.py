"""Fast LoRA for vLLM-CPU's model worker, installed through ``--worker-extension-cls``.

Measured on 2 cores (32 concurrent chats of 128 tokens, float32, one rank-8 adapter on all linear
layers): with vLLM's own LoRA ops the server generated 72 tokens/s against 192-200 with LoRA off, and
py-spy put ~55% of the worker's time in those ops. Two changes, both keeping vLLM's results:

- :mod:`devstack.lora_ops` replaces the per-token ops with ones grouped by adapter (any batch);
- when one adapter serves the whole batch (the common case, noted once per step when vLLM updates
  its LoRA metadata), ``add_lora_linear`` packs a layer's slices into two matrices (cached per layer
  and adapter slot, rebuilt when vLLM writes the slot) and costs two GEMMs; ``add_lora_logits`` two.

Together: 145-150 tokens/s, ratio 0.77-0.81 to the plain server (``mc bench serve``).

vLLM's worker process resolves ``GroupedLoraOps`` (an extension class that adds nothing to the worker);
resolving that name installs the above into ``vllm.lora.punica_wrapper.punica_cpu``, unless a function's
signature differs from the one written for (another vLLM version): then nothing is swapped and a
warning is logged.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from devstack.lora_ops import OPS, one_index

__all__ = ["install"]

_log = logging.getLogger(__name__)


def _slot(stacked: torch.Tensor, index: int, dtype: torch.dtype) -> torch.Tensor:
    w = stacked[index]
    return (w[0] if w.dim() == 3 else w).to(dtype)


class _Packed(NamedTuple):
    a: tuple[torch.Tensor, ...]
    b: tuple[torch.Tensor, ...]
    versions: tuple[int, ...]
    dtype: torch.dtype
    a_t: torch.Tensor  # (in, slices * rank): every slice's A of one adapter, side by side, transposed
    b_bd: torch.Tensor  # (slices * rank, out): their B's, transposed, on the block diagonal


#: (id of a layer's A tuple, adapter slot) -> that layer's packed weights of that adapter
_PACKED: dict[tuple[int, int], _Packed] = {}


def _versions(tensors: tuple[torch.Tensor, ...]) -> tuple[int, ...]:
    return tuple(t._version for t in tensors)


def _packed(
    a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], one: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's LoRA weights of adapter slot ``one`` as two matrices, so a batch costs two GEMMs.

    Rebuilt when vLLM writes the layer's stacked weights (loading an adapter into a slot bumps the
    tensors' version counters); the entry holds the tuples, so their ids cannot be reused meanwhile.
    """
    key = (id(a), one)
    versions = _versions(a) + _versions(b)
    entry = _PACKED.get(key)
    if entry is None or entry.a is not a or entry.versions != versions or entry.dtype != dtype:
        a_t = torch.cat([_slot(w, one, torch.float32) for w in a]).T.contiguous()
        b_bd = torch.block_diag(*(_slot(w, one, dtype).T for w in b)).contiguous()  # type: ignore[no-untyped-call]
        entry = _Packed(a, b, versions, dtype, a_t, b_bd)
        _PACKED[key] = entry
    return entry.a_t, entry.b_bd


#: attribute of the punica wrapper: (token index, tokens, sampler index, sampled rows) of the current batch
_BATCH = "_devstack_one_adapter"


def _remember_batch(original: Callable[..., Any]) -> Callable[..., Any]:
    """``update_metadata`` (once per step): also note whether one adapter serves the whole batch."""

    def update_metadata(
        self: Any, mapping: Any, lora_index_to_id: list[int | None], max_loras: int, vocab_size: int, **kwargs: Any
    ) -> Any:
        result = original(self, mapping, lora_index_to_id, max_loras, vocab_size, **kwargs)
        tokens, sampled = self.token_lora_indices, self.sampler_indices
        setattr(self, _BATCH, (one_index(tokens), tokens.shape[0], one_index(sampled), sampled.shape[0]))
        return result

    return update_metadata


def _fast_add_lora_linear(original: Callable[..., Any]) -> Callable[..., Any]:
    """``PunicaWrapperCPU.add_lora_linear`` for a batch on one adapter: two GEMMs for all slices."""

    def add_lora_linear(
        self: Any,
        y: torch.Tensor,
        x: torch.Tensor,
        lora_a_stacked: tuple[torch.Tensor, ...],
        lora_b_stacked: tuple[torch.Tensor, ...],
        scale: float,
        output_slices: tuple[int, ...],
        *,
        buffer: Any = None,
        **kwargs: Any,
    ) -> Any:
        x2 = x.view(-1, x.shape[-1])
        one, rows = getattr(self, _BATCH, (None, 0))[0:2]
        if buffer is not None or not kwargs.get("add_inputs", True) or rows != x2.shape[0]:
            one = None
        if one is None:
            return original(self, y, x, lora_a_stacked, lora_b_stacked, scale, output_slices, buffer=buffer, **kwargs)
        if one < 0:
            return None
        y2 = y.view(-1, y.shape[-1])
        if sum(output_slices) != y2.shape[1]:
            return original(self, y, x, lora_a_stacked, lora_b_stacked, scale, output_slices, buffer=buffer, **kwargs)
        a_t, b = _packed(lora_a_stacked, lora_b_stacked, one, y.dtype)
        h = x2.to(torch.float32) @ a_t  # vLLM's LoRA buffer is float32
        if scale != 1.0:
            h.mul_(scale)
        y2.addmm_(h.to(y.dtype), b)
        return None

    return add_lora_linear


def _fast_add_lora_logits(original: Callable[..., Any]) -> Callable[..., Any]:
    """``PunicaWrapperCPU.add_lora_logits`` for a batch on one adapter."""

    def add_lora_logits(
        self: Any,
        y: torch.Tensor,
        x: torch.Tensor,
        lora_a_stacked: torch.Tensor,
        lora_b_stacked: torch.Tensor,
        scale: float,
        *,
        buffer: Any = None,
        **kwargs: Any,
    ) -> Any:
        x2 = x.view(-1, x.shape[-1])
        one, rows = getattr(self, _BATCH, (None, 0, None, 0))[2:4]
        if buffer is not None or rows != x2.shape[0]:
            one = None
        if one is None:
            return original(self, y, x, lora_a_stacked, lora_b_stacked, scale, buffer=buffer, **kwargs)
        if one < 0:
            return None
        y2 = y.view(-1, y.shape[-1])
        h = x2.to(torch.float32) @ _slot(lora_a_stacked, one, torch.float32).T
        if scale != 1.0:
            h.mul_(scale)
        out = h.to(y.dtype) @ _slot(lora_b_stacked, one, y.dtype).T
        common = min(out.shape[1], y2.shape[1])  # the vocabulary may be padded differently
        y2[:, :common] += out[:, :common]
        return None

    return add_lora_logits


_METHODS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "update_metadata": _remember_batch,
    "add_lora_linear": _fast_add_lora_linear,
    "add_lora_logits": _fast_add_lora_logits,
}


_INSTALLED = "_devstack_lora_installed"


def _params(f: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(f).parameters)


def install(module: Any = None) -> bool:
    """Swap the ops that ``module`` (vLLM's ``punica_cpu``) calls and the single-adapter fast paths of its
    ``PunicaWrapperCPU``; nothing is swapped (False) where a signature is not the one written for."""
    if module is None:
        from vllm.lora.punica_wrapper import punica_cpu as module
    if getattr(module, _INSTALLED, False):
        return True
    wrapper = getattr(module, "PunicaWrapperCPU", None)
    for name, op in OPS.items():
        ref = getattr(module, name, None)
        if ref is None or _params(ref) != _params(op):
            _log.warning("vLLM's %s is not the one devstack.vllm_lora was written for: LoRA ops kept", name)
            return False
    for name, make in _METHODS.items():
        ref = getattr(wrapper, name, None)
        if ref is None or _params(ref) != _params(make(ref)):
            _log.warning("vLLM's PunicaWrapperCPU.%s is not the one devstack.vllm_lora was written for", name)
            return False
    for name, op in OPS.items():
        setattr(module, name, op)
    for name, make in _METHODS.items():
        setattr(wrapper, name, make(getattr(wrapper, name)))
    setattr(module, _INSTALLED, True)
    return True


class _GroupedLoraOps:
    """The worker extension: adds no method to vLLM's worker."""


def __getattr__(name: str) -> Any:
    # vLLM resolves ``--worker-extension-cls`` with getattr in its worker process: that is where and
    # when to install the ops (a plain import, e.g. by the tests, changes nothing).
    if name == "GroupedLoraOps":
        install()
        return _GroupedLoraOps
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
