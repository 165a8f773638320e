"""``mc bench trainer``: the trainer on one window against a plain PEFT loop on the same window.

The window is agent-like: every example has the app's system prompt (about 180 tokens with two
in-format examples, like the demo's), a word problem, and a python answer with sampler logprobs
and a 0/1 reward; ``steps=2`` gives two-step trajectories (code, an observation, the final answer).

* ``trainer``: everything the service does with a closed window before the upload (chat-template
  tokenising, chaining a trajectory's turns, packing micro-batches around their shared prefix, the
  objective, the optimizer steps, saving the adapter and the optimizer state).
* ``plain``: the loop a PEFT user writes: one sequence per turn, micro-batches of 8 sequences
  sorted by length and left-padded, ``logits_to_keep``, a log-softmax over the vocabulary, weighted
  NLL, backward, a fresh AdamW.

Both sides do the same optimizer steps on the same examples from the same fresh LoRA; sides
alternate within each round; figures are medians; the ratio is the median of the rounds' ratios of
examples/s, so a neighbour's load that comes and goes hurts both alike. Peak RSS is the process's
high-water mark (``VmHWM``), reset before each side through ``/proc/self/clear_refs``.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.events import AssistantTurn, Message, PredictionEvent, RewardEvent, TrainingExample
from trainer.batch import MicroBatch, build_sequences
from trainer.model import AdapterSlot
from trainer.settings import TrainerSettings
from trainer.train import WindowTrainer

__all__ = ["SYSTEM_PROMPT", "peak_rss_mb", "run", "synthetic_window"]

#: An app's system prompt of the demo's size and shape: an instruction and two worked examples.
SYSTEM_PROMPT = (
    "You solve tasks by writing Python code in one ```python block. The code must end with "
    "final_answer(answer=...), where answer is an integer. Use print() to look at intermediate values.\n"
    "Example task: How many letters are in the word 'continual'?\n"
    "```python\ncount = len('continual')\nprint(count)\nfinal_answer(answer=int(count))\n```\n"
    "Example task: Mia has 7 pears and buys 5 more pears. How many pears does Mia have now?\n"
    "```python\npears = 7 + 5\nprint(pears)\nfinal_answer(answer=int(pears))\n```"
)


def synthetic_window(
    tokenizer: Any, n: int, *, seed: int = 0, model_id: str = "bench", steps: int = 1, system: str = SYSTEM_PROMPT
) -> list[TrainingExample]:
    """``n`` agent-like examples of ``steps`` turns each, with sampler logprobs and a 0/1 reward."""
    rng = random.Random(seed)
    out: list[TrainingExample] = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        messages = [
            Message(role="system", content=system),
            Message(role="user", content=f"Task {i}: a shop sells {a} apples on Monday and {b} on Tuesday. Total?"),
        ]
        answers = [f"Thought: I add the two days.\n```python\ntotal = {a} + {b}\nprint(total)\n```"] * (steps - 1)
        answers.append(f"```python\nmonday = {a}\ntuesday = {b}\nfinal_answer(answer=monday + tuesday)\n```")
        turns: list[AssistantTurn] = []
        for k, answer in enumerate(answers):
            if k:
                messages.append(Message(role="user", content=f"Observation:\nExecution logs:\n{a + b}\n"))
            messages.append(Message(role="assistant", content=answer))
            ids = list(tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"])
            lps = [-rng.uniform(0.01, 2.0) for _ in ids]
            index = len(messages) - 1
            turns.append(AssistantTurn(message_index=index, completion_token_ids=ids, completion_logprobs=lps))
        prediction = PredictionEvent(model_id=model_id, base_model="bench", messages=messages, turns=turns)
        won = float(rng.random() < 0.5)
        reward = RewardEvent(prediction_id=prediction.prediction_id, model_id=model_id, reward=won)
        out.append(TrainingExample.join(prediction, reward))
    return out


def peak_rss_mb(reset: bool = False) -> float:
    """The process's peak resident memory so far (MiB); ``reset`` starts a new high-water mark."""
    if reset:
        with contextlib.suppress(OSError):  # not Linux: the figure is then the whole process's peak
            Path("/proc/self/clear_refs").write_text("5")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _plain_batches(window: list[TrainingExample], slot: AdapterSlot, settings: TrainerSettings) -> list[Any]:
    """One left-padded sequence per turn, 8 per micro-batch, sorted by length (a PEFT user's batch)."""
    import torch

    per_turn = []
    for seq in build_sequences(window, slot.tokenizer, settings.max_seq_len):
        # undo the chaining: each turn is a sequence ending with that turn's completion
        spans: list[list[int]] = []
        for t in seq.targets:
            if spans and spans[-1][-1] == t - 1:
                spans[-1].append(t)
            else:
                spans.append([t])
        per_turn += [(seq.input_ids[: span[-1] + 1], len(span), seq.example) for span in spans]
    per_turn.sort(key=lambda x: len(x[0]))
    pad = int(slot.tokenizer.pad_token_id)
    out = []
    for i in range(0, len(per_turn), 8):
        group = per_turn[i : i + 8]
        length, keep = max(len(g[0]) for g in group), max(g[1] for g in group) + 1
        ids = torch.full((len(group), length), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        target = torch.zeros((len(group), keep - 1), dtype=torch.bool)
        for b, (seq_ids, c, _) in enumerate(group):
            ids[b, length - len(seq_ids) :] = torch.tensor(seq_ids)
            mask[b, length - len(seq_ids) :] = 1
            target[b, keep - 1 - c :] = True
        next_ids = torch.cat([torch.tensor(g[0][-g[1] :]) for g in group])
        example = torch.tensor([g[2] for g in group for _ in range(g[1])])
        out.append((ids, mask, keep, target, next_ids, example))
    return out


def _plain_loop(slot: AdapterSlot, settings: TrainerSettings, batches: list[Any], adv: Any) -> None:
    import torch

    model = slot.model
    model.train()
    params = slot.trainable()
    opt = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    total = sum(int(b[3].sum()) for b in batches)
    for _ in range(settings.steps_per_window):
        opt.zero_grad(set_to_none=True)
        for ids, mask, keep, target, next_ids, example in batches:
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False).logits
            logp = logits[:, :-1][target].float().log_softmax(-1).gather(-1, next_ids[:, None]).squeeze(-1)
            (-(adv[example] * logp).sum() / total).backward()
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        opt.step()
    model.eval()


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one call."""
    peak_rss_mb(reset=True)
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started, peak_rss_mb()


def run(
    settings: TrainerSettings, slot: AdapterSlot, *, examples: int = 16, repeats: int = 3, steps: int = 1
) -> dict[str, Any]:
    """Medians over ``repeats`` rounds of each side on one window, and the trainer's figures on a
    window of the demo's shape (16 one-step examples) and of 16 two-step trajectories."""
    import torch
    from tqdm import tqdm

    trainer = WindowTrainer(settings, slot)
    window = synthetic_window(slot.tokenizer, examples, seed=settings.seed, steps=steps)
    adv = torch.tensor([1.0 if ex.reward.reward > 0.5 else -1.0 for ex in window])
    plain = _plain_batches(window, slot, settings)
    plain_tokens = settings.steps_per_window * sum(int(b[1].sum()) for b in plain)
    mbs: list[MicroBatch] = trainer.batches(window)
    computed = settings.steps_per_window * sum(mb.computed_tokens for mb in mbs)
    secs: dict[str, list[float]] = {"trainer": [], "plain": []}
    rss: dict[str, list[float]] = {"trainer": [], "plain": []}

    def trained(win: list[TrainingExample], folder: Path) -> Callable[[], None]:
        def go() -> None:
            slot.fresh("bench")
            trainer.train(win, None)
            slot.save(folder)

        return go

    def plain_side() -> None:
        slot.fresh("bench")
        _plain_loop(slot, settings, plain, adv)

    with tempfile.TemporaryDirectory() as tmp:
        trained(window[:2], Path(tmp) / "warm")()  # warm-up: first calls allocate and compile
        # The trainer's own windows first: the plain loop's 4 GB would stay in the C heap and make
        # the trainer's later peaks the plain loop's leftovers (a trainer process never runs it).
        demo_s, demo_rss = _timed(trained(synthetic_window(slot.tokenizer, 16, seed=1), Path(tmp) / "b"))
        multi_s, multi_rss = _timed(trained(synthetic_window(slot.tokenizer, 16, seed=2, steps=2), Path(tmp) / "c"))
        for round_ in tqdm(range(repeats), desc="bench trainer", unit="round"):
            for side in ("trainer", "plain") if round_ % 2 == 0 else ("plain", "trainer"):
                s, peak = _timed(trained(window, Path(tmp) / "a") if side == "trainer" else plain_side)
                secs[side].append(s)
                rss[side].append(peak)
    ratios = [p / t for t, p in zip(secs["trainer"], secs["plain"], strict=True)]
    t_med, p_med = statistics.median(secs["trainer"]), statistics.median(secs["plain"])
    return {
        "device": str(slot.device),
        "threads": torch.get_num_threads(),
        "examples": examples,
        "turns_per_example": steps,
        "steps": settings.steps_per_window,
        "plain_tokens": plain_tokens,
        "trainer_computed_tokens": computed,
        "round_ratios": [round(r, 3) for r in ratios],
        "trainer_examples_per_s": round(examples * settings.steps_per_window / t_med, 3),
        "plain_examples_per_s": round(examples * settings.steps_per_window / p_med, 3),
        # tokens of the window as a plain loop computes them, per second: the same count both sides
        "trainer_tokens_per_s": round(plain_tokens / t_med, 1),
        "peft_loop_tokens_per_s": round(plain_tokens / p_med, 1),
        "ratio": round(statistics.median(ratios), 3),
        "trainer_peak_rss_mb": round(max(rss["trainer"]), 1),
        "plain_peak_rss_mb": round(max(rss["plain"]), 1),
        "window_train_s": round(demo_s, 2),
        "multi_step_window_s": round(multi_s, 2),
        "peak_rss_mb": round(max(demo_rss, multi_rss), 1),
    }
