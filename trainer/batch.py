"""Training examples → token sequences → micro-batches that compute what they share once.

Each assistant turn of a trajectory is one span of completion tokens after the chat-templated
messages before it (with the generation prompt, exactly what the server rendered). The completion
tokens are the ones the PredictionEvent recorded; when it recorded none, the assistant message is
rendered with the chat template and its tokens are what follows the prompt.

Two things are never computed twice:

* **Turns of one trajectory.** The prompt of turn k+1 usually starts with the whole sequence of
  turn k (its prompt, then its completion as the template renders it). Then the two are one
  sequence with two target spans: a two-step agent costs one forward pass, not two.
* **The prefix of a micro-batch.** The sequences of a window mostly share the app's system prompt
  (three quarters of the demo's tokens). Sequences are sorted, so that shared prefixes are
  neighbours, and each micro-batch keeps its longest common prefix apart: the forward pass runs it
  once and lets every row attend to its keys and values (``trainer.model.token_logprobs``).

Micro-batches are bounded by the tokens they compute (``MC_TRAINER_MICRO_BATCH_TOKENS``), which bounds the
activations kept for the backward pass whatever the trajectories look like.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.events import Message, PredictionEvent, TrainingExample

if TYPE_CHECKING:
    import torch

__all__ = ["MicroBatch", "TokenSeq", "build_sequences", "collate", "pack", "prompt_key"]

#: a shared prefix shorter than this is not worth a forward pass of its own
_MIN_PREFIX = 8


@dataclass(frozen=True)
class TokenSeq:
    """One sequence: ``targets`` are the positions of its completion tokens (each > 0, ascending)."""

    input_ids: list[int]
    targets: list[int]
    sampler_logprobs: list[float | None]  # one per target: the sampler's logprob, None if unknown
    example: int  # index of the example in the window

    @property
    def completion_len(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class MicroBatch:
    """Rows that share ``prefix_ids``, then each row's own suffix, right-padded.

    ``target_index`` points, in the flattened [B * S] suffix positions, at the positions whose output
    predicts a completion token (``next_ids``), in order.
    """

    prefix_ids: torch.Tensor  # [P] (P may be 0)
    input_ids: torch.Tensor  # [B, S]
    attention_mask: torch.Tensor  # [B, S]
    target_index: torch.Tensor  # [N]
    next_ids: torch.Tensor  # [N] the completion tokens
    sampler_logp: torch.Tensor  # [N] (0 where missing)
    has_sampler: torch.Tensor  # [N] bool
    example: torch.Tensor  # [N] index of each token's example
    tokens: int  # tokens of the sequences as written (the throughput count; the prefix counts per row)
    computed_tokens: int  # tokens the forward pass runs: the prefix once, plus the padded suffixes (as one chunk)

    def split(self, max_tokens: int) -> list[MicroBatch]:
        """The rows in chunks of at most ``max_tokens`` padded suffix tokens (at least one row each),
        every chunk with the same prefix and padded only to its own longest row (``collate`` orders a
        batch's rows by length, so neighbours pad little). A chunk's completion tokens are a
        contiguous slice of this batch's (they are in row order), so per-token arrays computed for the
        whole batch (loss scales, reference logprobs) are sliced alike. The first chunk counts the
        prefix as computed.
        """
        rows, width = self.input_ids.shape
        if rows * width <= max_tokens:
            return [self]
        lengths = self.attention_mask.sum(dim=1).tolist()
        bounds: list[tuple[int, int, int]] = []  # (first row, end row, width)
        lo, w = 0, 0
        for r, n in enumerate(lengths):
            wide = max(w, int(n))
            if r > lo and (r + 1 - lo) * wide > max_tokens:
                bounds.append((lo, r, w))
                lo, wide = r, int(n)
            w = wide
        bounds.append((lo, rows, w))
        row_of, col = self.target_index // width, self.target_index % width
        p = int(self.prefix_ids.shape[0])
        out: list[MicroBatch] = []
        for lo, hi, w in bounds:
            a, b = (int((row_of < r).sum()) for r in (lo, hi))
            mask = self.attention_mask[lo:hi, :w]
            out.append(
                MicroBatch(
                    prefix_ids=self.prefix_ids,
                    input_ids=self.input_ids[lo:hi, :w],
                    attention_mask=mask,
                    target_index=(row_of[a:b] - lo) * w + col[a:b],
                    next_ids=self.next_ids[a:b],
                    sampler_logp=self.sampler_logp[a:b],
                    has_sampler=self.has_sampler[a:b],
                    example=self.example[a:b],
                    tokens=int(mask.sum()) + p * (hi - lo),
                    computed_tokens=(hi - lo) * w + (p if lo == 0 else 0),
                )
            )
        return out


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


def _one_turn(prompt: list[int], completion: list[int], sampler: list[float] | None, max_len: int) -> TokenSeq | None:
    """A lone turn cut to ``max_len``: the completion keeps its first tokens, the prompt its last."""
    completion = completion[: max_len - 1]
    prompt = prompt[-(max_len - len(completion)) :]
    return TokenSeq(
        prompt + completion,
        list(range(len(prompt), len(prompt) + len(completion))),
        list(sampler[: len(completion)]) if sampler is not None else [None] * len(completion),
        -1,
    )


def build_sequences(examples: Sequence[TrainingExample], tokenizer: Any, max_seq_len: int) -> list[TokenSeq]:
    """The sequences of a window: one per trajectory where its turns chain, else one per turn."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out: list[TokenSeq] = []
    for i, ex in enumerate(examples):
        messages = ex.prediction.messages
        open_seq: TokenSeq | None = None  # the trajectory so far, while its turns chain
        for index, ids, logprobs in _turns(ex.prediction):
            prompt_text = _render(tokenizer, messages[:index], generation_prompt=True)
            prompt = _encode(tokenizer, prompt_text) or [int(bos)]  # the first token needs a predecessor
            completion = list(ids)
            sampler = list(logprobs) if logprobs is not None and ids else None
            if not completion:
                full = _render(tokenizer, messages[: index + 1], generation_prompt=False)
                if not full.startswith(prompt_text):
                    continue  # a template that rewrites history: no prefix to align, skip the turn
                completion = _encode(tokenizer, full[len(prompt_text) :])
            if not completion:
                continue
            chained = (
                open_seq is not None
                and len(prompt) + len(completion) <= max_seq_len
                and prompt[: len(open_seq.input_ids)] == open_seq.input_ids
            )
            if chained and open_seq is not None:
                n = len(prompt)
                open_seq = TokenSeq(
                    prompt + completion,
                    open_seq.targets + list(range(n, n + len(completion))),
                    open_seq.sampler_logprobs + (list(sampler) if sampler is not None else [None] * len(completion)),
                    i,
                )
                out[-1] = open_seq
                continue
            seq = _one_turn(prompt, completion, sampler, max_seq_len)
            if seq is None:
                continue
            open_seq = TokenSeq(seq.input_ids, seq.targets, seq.sampler_logprobs, i)
            out.append(open_seq)
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


def _prefix_len(seqs: Sequence[TokenSeq]) -> int:
    """The shared prefix a micro-batch computes once: it must end before the first position that
    predicts a target (that position's output is needed, so it belongs to the suffixes)."""
    if len(seqs) < 2:
        return 0
    limit = min(s.targets[0] for s in seqs) - 1
    first = seqs[0].input_ids
    p = limit
    for s in seqs[1:]:
        p = _common_prefix(first, s.input_ids, p)
    return p if p >= _MIN_PREFIX else 0


def _cost(seqs: Sequence[TokenSeq]) -> int:
    p = _prefix_len(seqs)
    return p + len(seqs) * (max(len(s.input_ids) for s in seqs) - p)


def _partition(order: Sequence[TokenSeq], max_tokens: int, max_rows: int) -> tuple[int, list[list[TokenSeq]]]:
    """The cheapest split of ``order`` into contiguous groups within the limits: (cost, groups).

    Dynamic programming over the cut points; a group's cost is what its forward pass computes (its
    shared prefix once, every row padded to its longest suffix).
    """
    n = len(order)
    best: list[tuple[int, int]] = [(0, 0)] + [(1 << 62, 0)] * n  # (cost of the first j, start of the last group)
    for j in range(1, n + 1):
        for i in range(j - 1, max(j - max_rows, 0) - 1, -1):
            cost = _cost(order[i:j])
            if cost > max_tokens and j - i > 1:
                break  # longer groups only cost more
            if best[i][0] + cost < best[j][0]:
                best[j] = (best[i][0] + cost, i)
    groups: list[list[TokenSeq]] = []
    j = n
    while j > 0:
        i = best[j][1]
        groups.append(list(order[i:j]))
        j = i
    return best[n][0], groups[::-1]


def pack(seqs: Sequence[TokenSeq], *, max_tokens: int, max_rows: int) -> list[list[TokenSeq]]:
    """Groups of sequences, each computing at most ``max_tokens`` tokens (padding included; a
    sequence longer than that is a group of its own) and holding at most ``max_rows`` rows, split
    where that computes the fewest tokens in all.

    Two orders are tried: by token ids (sequences with a common prefix next to each other) and by
    length within that (rows of a group padded to similar lengths); one long answer in a window of
    short ones would otherwise pad every row of its group to its length (3x the tokens, measured on
    the demo's windows).
    """
    if not seqs:
        return []
    by_ids = sorted(seqs, key=lambda s: s.input_ids)
    by_len = sorted(seqs, key=lambda s: (len(s.input_ids), s.input_ids))
    return min((_partition(order, max_tokens, max_rows) for order in (by_ids, by_len)), key=lambda r: r[0])[1]


def collate(seqs: Sequence[TokenSeq], pad_id: int, device: torch.device) -> MicroBatch:
    import torch

    p = _prefix_len(seqs)
    width = max(len(s.input_ids) for s in seqs) - p
    # rows by length: chunks of neighbouring rows (MicroBatch.split) then pad to similar lengths
    seqs = sorted(seqs, key=lambda s: len(s.input_ids))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    index: list[int] = []
    next_ids: list[int] = []
    sampler: list[float] = []
    has: list[bool] = []
    example: list[int] = []
    for b, s in enumerate(seqs):
        suffix = s.input_ids[p:]
        ids[b, : len(suffix)] = torch.tensor(suffix)
        mask[b, : len(suffix)] = 1
        for t, lp in zip(s.targets, s.sampler_logprobs, strict=True):
            index.append(b * width + (t - 1 - p))  # the position before a token predicts it
            next_ids.append(s.input_ids[t])
            sampler.append(0.0 if lp is None else lp)
            has.append(lp is not None)
            example.append(s.example)
    return MicroBatch(
        prefix_ids=torch.tensor(seqs[0].input_ids[:p], dtype=torch.long, device=device),
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        target_index=torch.tensor(index, dtype=torch.long, device=device),
        next_ids=torch.tensor(next_ids, dtype=torch.long, device=device),
        sampler_logp=torch.tensor(sampler, dtype=torch.float32, device=device),
        has_sampler=torch.tensor(has, dtype=torch.bool, device=device),
        example=torch.tensor(example, dtype=torch.long, device=device),
        tokens=sum(len(s.input_ids) for s in seqs),
        computed_tokens=p + len(seqs) * width,
    )
