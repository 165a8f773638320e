"""Training examples → token sequences → padded micro-batches.

Each assistant turn of a trajectory is one sequence: the chat-templated messages before it (with
the generation prompt, exactly what the server rendered) followed by the sampled completion tokens.
The completion tokens are the ones the PredictionEvent recorded; when it recorded none, the
assistant message is rendered with the chat template and its tokens are what follows the prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.events import Message, PredictionEvent, TrainingExample

if TYPE_CHECKING:
    import torch

__all__ = ["MicroBatch", "TokenSeq", "build_sequences", "collate", "prompt_key"]


@dataclass(frozen=True)
class TokenSeq:
    input_ids: list[int]
    start: int  # index of the first completion token
    sampler_logprobs: list[float] | None  # one per completion token, or None
    example: int  # index of the example in the window

    @property
    def completion_len(self) -> int:
        return len(self.input_ids) - self.start


@dataclass(frozen=True)
class MicroBatch:
    """Left-padded sequences, so every completion ends at the last position.

    Only the last ``keep`` positions need logits (``logits_to_keep``): the LM head and the softmax
    over the vocabulary then run on completion positions only, not on the prompts. ``target``
    marks, within those positions minus the last, the ones whose next token is a completion token.
    """

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L] (count from each sequence's first real token)
    keep: int  # logits needed for the last ``keep`` positions
    target: torch.Tensor  # [B, keep-1] bool
    next_ids: torch.Tensor  # [N] the completion tokens, in target order
    sampler_logp: torch.Tensor  # [N] (0 where missing)
    has_sampler: torch.Tensor  # [N] bool
    example: torch.Tensor  # [N] index of each token's example
    tokens: int  # non-pad tokens in the batch (the throughput count)


def prompt_key(prediction: PredictionEvent) -> str:
    """What the agent was asked: the messages before the first assistant message."""
    head: list[dict[str, Any]] = []
    for msg in prediction.messages:
        if msg.role == "assistant":
            break
        head.append({"role": msg.role, "content": msg.content})
    return json.dumps(head, sort_keys=True)


def _as_dicts(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


def _render(tokenizer: Any, messages: Sequence[Message], *, generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(_as_dicts(messages), tokenize=False, add_generation_prompt=generation_prompt)
    return str(text)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _turns(prediction: PredictionEvent) -> list[tuple[int, list[int], list[float] | None]]:
    if prediction.turns:
        return [(t.message_index, t.completion_token_ids, t.completion_logprobs) for t in prediction.turns]
    return [(i, [], None) for i, m in enumerate(prediction.messages) if m.role == "assistant"]


def build_sequences(examples: Sequence[TrainingExample], tokenizer: Any, max_seq_len: int) -> list[TokenSeq]:
    """Every assistant turn of every example, truncated to ``max_seq_len`` (prompt cut on the left)."""
    out: list[TokenSeq] = []
    for i, ex in enumerate(examples):
        messages = ex.prediction.messages
        for index, ids, logprobs in _turns(ex.prediction):
            prompt_text = _render(tokenizer, messages[:index], generation_prompt=True)
            prompt = _encode(tokenizer, prompt_text)
            completion = list(ids)
            sampler = list(logprobs) if logprobs is not None and ids else None
            if not completion:
                full = _render(tokenizer, messages[: index + 1], generation_prompt=False)
                if not full.startswith(prompt_text):
                    continue  # a template that rewrites history: no prefix to align, skip the turn
                completion = _encode(tokenizer, full[len(prompt_text) :])
            if not completion:
                continue
            completion = completion[: max_seq_len - 1]
            sampler = sampler[: len(completion)] if sampler is not None else None
            prompt = prompt[-(max_seq_len - len(completion)) :] if prompt else prompt
            if not prompt:  # the first completion token needs a position that predicts it
                bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
                prompt = [int(bos)]
            out.append(TokenSeq(prompt + completion, len(prompt), sampler, i))
    return out


def collate(seqs: Sequence[TokenSeq], pad_id: int, device: torch.device) -> MicroBatch:
    import torch

    length = max(len(s.input_ids) for s in seqs)
    keep = max(s.completion_len for s in seqs) + 1
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    target = torch.zeros((len(seqs), keep - 1), dtype=torch.bool)
    next_ids: list[int] = []
    sampler: list[float] = []
    has: list[bool] = []
    example: list[int] = []
    for b, s in enumerate(seqs):
        n, c = len(s.input_ids), s.completion_len
        ids[b, length - n :] = torch.tensor(s.input_ids)
        mask[b, length - n :] = 1
        target[b, keep - 1 - c :] = True
        next_ids.extend(s.input_ids[s.start :])
        sampler.extend(s.sampler_logprobs if s.sampler_logprobs is not None else [0.0] * c)
        has.extend([s.sampler_logprobs is not None] * c)
        example.extend([s.example] * c)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return MicroBatch(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        keep=keep,
        target=target.to(device),
        next_ids=torch.tensor(next_ids, dtype=torch.long, device=device),
        sampler_logp=torch.tensor(sampler, dtype=torch.float32, device=device),
        has_sampler=torch.tensor(has, dtype=torch.bool, device=device),
        example=torch.tensor(example, dtype=torch.long, device=device),
        tokens=int(mask.sum()),
    )
