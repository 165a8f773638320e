"""Attention on the CPU without copying the key/value heads of grouped-query attention.

Transformers' SDPA path repeats each key/value head for every query head it serves (SmolLM2-135M:
3 key/value heads for 9 query heads) whenever an attention mask is passed, which the trainer always
does (right-padded rows behind a shared prefix). The copies are 3x the keys and values of every
layer, and the autograd graph keeps them for the backward pass. PyTorch's CPU flash-attention kernel
takes the grouped heads as they are (``enable_gqa=True``) with a mask: the same result and gradient,
without the copies. Measured on one window of the demo's shape (16 rows of 59 tokens behind a
151-token prefix, one core, float32): the copies were 443 MB of the activations a forward pass keeps
without gradient checkpointing; the attention kernel itself ran about 1.6x faster forward + backward.

CUDA keeps transformers' own choice (its mem-efficient kernel takes a mask but not grouped heads).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GQA_SDPA", "use_grouped_attention"]

#: the name the attention function and its mask function are registered under in transformers
GQA_SDPA = "mc_sdpa_gqa"


def _gqa_sdpa(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' ``sdpa_attention_forward`` where it would repeat the key/value heads."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if groups <= 1 or attention_mask is None or kwargs.get("position_bias") is not None or kwargs.get("cache"):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


def use_grouped_attention(model: Any) -> bool:
    """Switch a CPU model using transformers' SDPA to :func:`_gqa_sdpa` (the masks stay SDPA's).
    False where the model does not use SDPA (it is left as it is)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(GQA_SDPA, _gqa_sdpa)
    AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)
    model.set_attn_implementation(GQA_SDPA)
    return True
