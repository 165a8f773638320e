"""The training objective, as pure functions on numbers and tensors (unit-tested with tiny inputs).

Scalar rewards with usually one sample per prompt: GRPO/RLOO need groups of samples, which we rarely
have, so the baseline is a running (EMA) mean reward per model, replaced by a leave-one-out mean when
other predictions of the same prompt are in the window. Samples were drawn by an older adapter
(the sampler, mu), so each token's policy-gradient term is weighted by the truncated importance
ratio min(pi_theta/mu, C), detached (truncated IS, as in IMPALA/V-trace). Per window:

    A_i   = (r_i - b_i) / sqrt(mean_j (r_j - b_j)^2)       b_i: LOO mean or EMA baseline
    A_i  <- lambda A_i where A_i < 0                        lambda = MC_TRAINER_NEGATIVE_WEIGHT (default 0.5)
    w_t   = sg(min(exp(logp_t - mu_t), C))                  1 when mu is missing
    kl_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1      (k3 estimator, ref = adapter disabled)
    L     = sum_t c_t [ -w_t A_i(t) logp_t + beta kl_t ]

with c_t = 1/(N T_i(t)) (``sequences``, the default: each of the window's N examples weighs the same,
its T_i completion tokens share it) or c_t = 1/T (``tokens``: every completion token of the window
weighs the same). Measured in the live demo (README): with per-token weights the long failed answers
(up to the token limit, against ~30 tokens for a right one) carried most of the gradient even at a
success rate of 0.8; pushing their tokens down flattened the policy, answers grew to the limit and the
reward collapsed, with or without the KL penalty.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

__all__ = [
    "LossNormalization",
    "TokenLoss",
    "advantages",
    "baselines",
    "scale_negatives",
    "token_loss",
    "token_scales",
    "update_baseline",
]

#: how the window's completion tokens share the loss (see the module's docstring)
LossNormalization = Literal["sequences", "tokens"]


def baselines(
    rewards: Sequence[float], prompts: Sequence[Hashable], predictions: Sequence[Hashable], ema: float | None
) -> list[float]:
    """Per example: the mean reward of *other* predictions of the same prompt in the window
    (leave-one-out), else the model's EMA baseline, else (first window) the window's mean reward.

    Several rewards of one prediction do not serve as each other's baseline: they rate the same
    sample, so comparing them with each other would cancel the signal instead of measuring it.
    """
    if not (len(rewards) == len(prompts) == len(predictions)):
        raise ValueError("rewards, prompts and predictions differ in length")
    fallback = ema if ema is not None else (sum(rewards) / len(rewards) if rewards else 0.0)
    # prompt -> prediction -> [sum, count]
    by_prompt: dict[Hashable, dict[Hashable, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for r, p, q in zip(rewards, prompts, predictions, strict=True):
        acc = by_prompt[p][q]
        acc[0] += r
        acc[1] += 1
    out: list[float] = []
    for p, q in zip(prompts, predictions, strict=True):
        others = [acc for pred, acc in by_prompt[p].items() if pred != q]
        count = sum(acc[1] for acc in others)
        out.append(sum(acc[0] for acc in others) / count if count else fallback)
    return out


def advantages(rewards: Sequence[float], base: Sequence[float], eps: float = 1e-6) -> list[float]:
    """``r - b`` divided by its root mean square over the window.

    Scale-only normalisation (no re-centering): centering on the window's mean would throw away
    what the EMA baseline says (a window where most samples beat the running mean teaches that).
    A window whose rewards are all equal teaches nothing: its advantages are zero.
    """
    raw = [r - b for r, b in zip(rewards, base, strict=True)]
    if not raw:
        return []
    if max(rewards) == min(rewards):
        # No contrast inside the window (all failed, or all succeeded): against the running baseline
        # every sample would get the same-signed advantage, and a stretch of all-0 rewards would
        # push down every sampled token, window after window, until the adapter collapses.
        return [0.0] * len(raw)
    rms = math.sqrt(sum(a * a for a in raw) / len(raw))
    return [a / (rms + eps) for a in raw] if rms > eps else [0.0] * len(raw)


def scale_negatives(adv: Sequence[float], weight: float) -> list[float]:
    """Negative advantages times ``weight`` (0: learn from the better-than-baseline samples only,
    advantage-weighted fine-tuning; 1: the plain policy gradient)."""
    return [a if a > 0 else a * weight for a in adv]


def token_scales(example_of_token: Sequence[int], normalization: LossNormalization) -> list[float]:
    """c_t for each completion token of the window, given the index of its example. Examples without
    completion tokens (nothing to learn from) take no share."""
    if normalization == "tokens":
        return [1.0 / len(example_of_token)] * len(example_of_token) if example_of_token else []
    counts = Counter(example_of_token)
    return [1.0 / (len(counts) * counts[i]) for i in example_of_token]


def update_baseline(ema: float | None, rewards: Sequence[float], decay: float) -> float | None:
    """The EMA baseline after a window (initialised with the first window's mean)."""
    if not rewards:
        return ema
    mean = sum(rewards) / len(rewards)
    return mean if ema is None else decay * ema + (1.0 - decay) * mean


@dataclass(frozen=True)
class TokenLoss:
    """The loss of some tokens (already weighted by c_t) and its parts, summed."""

    loss: torch.Tensor
    pg_sum: float  # sum over tokens of -c w A logp
    kl_sum: float  # sum over tokens of c kl
    clipped: int  # tokens whose ratio was truncated
    with_ratio: int  # tokens that had a sampler logprob


def token_loss(
    logp: torch.Tensor,
    adv: torch.Tensor,
    sampler_logp: torch.Tensor,
    has_sampler: torch.Tensor,
    *,
    scale: torch.Tensor | float,
    clip: float,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> TokenLoss:
    """The objective on a flat set of assistant tokens (all 1-D, same length).

    ``logp``: log pi_theta of each token (with grad); ``adv``: its example's advantage;
    ``sampler_logp``/``has_sampler``: mu where recorded; ``scale``: c_t, computed over the whole window
    (not this micro-batch), which makes gradient accumulation over micro-batches exact.
    """
    import torch

    with torch.no_grad():
        ratio = torch.exp(logp.detach() - sampler_logp)
        weight = torch.where(has_sampler, torch.clamp(ratio, max=clip), torch.ones_like(ratio))
        clipped = int((has_sampler & (ratio > clip)).sum())
    pg = -(scale * weight * adv * logp).sum()
    loss = pg
    kl_value = 0.0
    if ref_logp is not None:
        diff = ref_logp - logp
        kl = (scale * (torch.exp(diff) - diff - 1.0)).sum()
        kl_value = float(kl.detach())
        if kl_coef > 0:
            loss = loss + kl_coef * kl
    return TokenLoss(loss, float(pg.detach()), kl_value, clipped, int(has_sampler.sum()))
