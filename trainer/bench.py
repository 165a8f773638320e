"""``mc bench trainer``: the trainer's tokens/s on one window vs a plain PEFT loop on the same batch.

Both sides start from the same fresh LoRA and run the same number of optimizer steps over the same
micro-batches. The trainer side is everything the service does with a window between "closed" and
"upload": tokenising the examples with the chat template, advantages, the objective (truncated
importance ratios, optional KL), the steps, and saving the adapter. The plain side is the loop a
PEFT user writes on the already-tokenised batch: forward (with the same ``logits_to_keep`` and
``use_cache=False``, so the ratio measures the pipeline, not those two savings), log-softmax,
weighted NLL, backward, step. ``--full-logits`` adds the naive loop (logits at every position,
the KV cache built) to show what the savings are worth.
Sides alternate within each round; figures are medians over rounds, and the ratio is the median
of the rounds' ratios, so a neighbour's load that comes and goes hurts both sides alike.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from schemas.events import AssistantTurn, Message, PredictionEvent, RewardEvent, TrainingExample
from trainer.model import AdapterSlot
from trainer.settings import TrainerSettings
from trainer.train import WindowTrainer

__all__ = ["run", "synthetic_window"]


def synthetic_window(tokenizer: Any, n: int, *, seed: int = 0, model_id: str = "bench") -> list[TrainingExample]:
    """``n`` agent-like examples: a word problem, a python answer with sampler logprobs, a 0/1 reward."""
    rng = random.Random(seed)
    out: list[TrainingExample] = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        question = f"Task {i}: a shop sells {a} apples on Monday and {b} on Tuesday. How many in total?"
        answer = (
            f"Thought: I add the two days.\n```python\nmonday = {a}\ntuesday = {b}\n"
            f"total = monday + tuesday\nfinal_answer(answer=total)\n```"
        )
        ids = list(tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"])
        prediction = PredictionEvent(
            model_id=model_id,
            base_model="bench",
            messages=[Message(role="user", content=question), Message(role="assistant", content=answer)],
            turns=[
                AssistantTurn(
                    message_index=1,
                    completion_token_ids=ids,
                    completion_logprobs=[-rng.uniform(0.01, 2.0) for _ in ids],
                )
            ],
        )
        reward = RewardEvent(
            prediction_id=prediction.prediction_id, model_id=model_id, reward=float(rng.random() < 0.5)
        )
        out.append(TrainingExample.join(prediction, reward))
    return out


def _plain_loop(
    slot: AdapterSlot, settings: TrainerSettings, batches: list[Any], adv: Any, *, full_logits: bool = False
) -> int:
    import torch

    model = slot.model
    model.train()
    params = slot.trainable()
    opt = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    total = sum(int(mb.target.sum()) for mb in batches)
    tokens = 0
    for _ in range(settings.steps_per_window):
        opt.zero_grad(set_to_none=True)
        for mb in batches:
            keep = 0 if full_logits else mb.keep  # 0: logits at every position
            logits = model(
                input_ids=mb.input_ids,
                attention_mask=mb.attention_mask,
                logits_to_keep=keep,
                use_cache=None if full_logits else False,
            ).logits
            logp = logits[:, -mb.keep : -1][mb.target].float().log_softmax(-1)
            logp = logp.gather(-1, mb.next_ids[:, None]).squeeze(-1)
            (-(adv[mb.example] * logp).sum() / total).backward()
            tokens += mb.tokens
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        opt.step()
    model.eval()
    return tokens


def run(
    settings: TrainerSettings, slot: AdapterSlot, *, examples: int = 32, repeats: int = 2, full_logits: bool = False
) -> dict[str, Any]:
    """Best tokens/s of each side. ``full_logits`` adds a third side: the plain loop computing logits
    at every position (what a loop without ``logits_to_keep`` costs)."""
    import torch
    from tqdm import tqdm

    trainer = WindowTrainer(settings, slot)
    window = synthetic_window(slot.tokenizer, examples, seed=settings.seed)
    batches = trainer.batches(window)  # the plain loop's pre-tokenised copy of the same batch
    adv = torch.tensor([1.0 if ex.reward.reward > 0.5 else -1.0 for ex in window], device=slot.device)
    sides = ["trainer", "plain", *(["full_logits"] if full_logits else [])]
    rates: dict[str, list[float]] = {side: [] for side in sides}
    tokens = dict.fromkeys(sides, 0)

    def sync() -> None:
        if slot.device.type == "cuda":
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as tmp:
        slot.fresh("bench")
        _plain_loop(slot, settings.model_copy(update={"steps_per_window": 1}), batches[:1], adv)  # warm-up
        for round_ in tqdm(range(repeats), desc="bench trainer", unit="round"):
            for side in sides if round_ % 2 == 0 else sides[::-1]:  # neither side always goes first
                slot.fresh("bench")
                sync()
                started = time.perf_counter()
                if side == "trainer":
                    result = trainer.train(window, None)
                    slot.save(Path(tmp) / "adapter")
                    count = result.tokens
                else:
                    count = _plain_loop(slot, settings, batches, adv, full_logits=side == "full_logits")
                sync()
                rates[side].append(count / (time.perf_counter() - started))
                tokens[side] = count
    # Medians, and the ratio as the median of each round's ratio: the two runs of a round are
    # back to back, so a neighbour's load that comes and goes cancels out of that round's ratio.
    ratios = [t / p for t, p in zip(rates["trainer"], rates["plain"], strict=True)]
    return {
        "device": str(slot.device),
        "examples": examples,
        "steps": settings.steps_per_window,
        "tokens_per_step": tokens["trainer"] // settings.steps_per_window,
        "rounds": repeats,
        "round_ratios": [round(r, 3) for r in ratios],
        "trainer_tokens_per_s": round(statistics.median(rates["trainer"]), 1),
        "peft_loop_tokens_per_s": round(statistics.median(rates["plain"]), 1),
        "ratio": round(statistics.median(ratios), 3),
        **({"full_logits_loop_tokens_per_s": round(statistics.median(rates["full_logits"]), 1)} if full_logits else {}),
    }
