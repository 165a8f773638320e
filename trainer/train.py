"""One window of examples → some optimizer steps on the adapter slot (the objective of objective.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.events import TrainingExample
from trainer.batch import MicroBatch, build_sequences, collate, pack, prompt_key
from trainer.cpus import release_free_memory
from trainer.model import AdapterSlot, SharedPrefix, token_logprobs
from trainer.objective import advantages, baselines, scale_negatives, token_loss, token_scales, update_baseline
from trainer.settings import TrainerSettings

__all__ = ["CPU_ACTIVATION_TOKENS", "TrainResult", "WindowTrainer"]

#: a chunk of rows on the CPU when MC_TRAINER_ACTIVATION_TOKENS is unset: measured on a 16-example window
#: (one core, float32), 192 kept the peak RSS at 2.2-2.3 GB for one- and two-step windows (256: up to 2.7 GB)
CPU_ACTIVATION_TOKENS = 192


@dataclass(frozen=True)
class TrainResult:
    trained: bool  # False when the window had no assistant tokens to learn from
    baseline: float | None  # the model's EMA reward baseline after this window
    metrics: dict[str, float] = field(default_factory=dict)
    tokens: int = 0  # non-pad tokens processed over all steps (the throughput count)
    seconds: float = 0.0


class WindowTrainer:
    def __init__(self, settings: TrainerSettings, slot: AdapterSlot) -> None:
        self.settings = settings
        self.slot = slot

    def batches(self, examples: Sequence[TrainingExample]) -> list[MicroBatch]:
        """The window's sequences in micro-batches bounded by the tokens they compute."""
        s = self.settings
        seqs = build_sequences(examples, self.slot.tokenizer, s.max_seq_len)
        pad = int(self.slot.tokenizer.pad_token_id)
        groups = pack(seqs, max_tokens=s.micro_batch_tokens, max_rows=s.micro_batch_size)
        return [collate(group, pad, self.slot.device) for group in groups]

    def train(self, examples: Sequence[TrainingExample], baseline: float | None) -> TrainResult:
        import torch

        started = time.perf_counter()
        s = self.settings
        rewards = [ex.reward.reward for ex in examples]
        new_baseline = update_baseline(baseline, rewards, s.baseline_decay)
        base = baselines(
            rewards,
            [prompt_key(ex.prediction) for ex in examples],
            [ex.prediction.prediction_id for ex in examples],
            baseline,
        )
        adv_list = scale_negatives(advantages(rewards, base), s.negative_weight)
        # No contrast (equal rewards): no step at all, since a step with a zero gradient would still
        # replay the optimizer's momentum. The window still becomes a version (the same weights, the
        # updated baseline), so every window is accounted for and versions keep flowing.
        steps = s.steps_per_window if any(adv_list) else 0
        adv = torch.tensor(adv_list, dtype=torch.float32, device=self.slot.device)
        batches = self.batches(examples)
        total = sum(int(mb.next_ids.numel()) for mb in batches)
        if total == 0:
            return TrainResult(False, baseline)
        # c_t of every token, computed over the whole window, then split back into the micro-batches
        flat = token_scales([i for mb in batches for i in mb.example.tolist()], s.loss_normalization)
        scales, at = [], 0
        for mb in batches:
            n = int(mb.next_ids.numel())
            scales.append(torch.tensor(flat[at : at + n], dtype=torch.float32, device=self.slot.device))
            at += n
        batch_s = time.perf_counter() - started
        model = self.slot.model
        chunk_tokens = s.activation_tokens or (
            s.micro_batch_tokens if self.slot.device.type == "cuda" else CPU_ACTIVATION_TOKENS
        )
        refs: list[torch.Tensor | None] = [None] * len(batches)
        if s.kl_coef > 0 and steps:
            # The base model's logprobs do not change during the window: one forward pass each, in
            # the same chunks as the training pass (each padded only to its own longest row).
            with torch.no_grad(), model.disable_adapter(), self.slot.compute():
                for i, mb in enumerate(batches):
                    prefix = SharedPrefix(model, mb.prefix_ids)
                    refs[i] = torch.cat([token_logprobs(model, c, prefix=prefix) for c in mb.split(chunk_tokens)])
        model.train()
        params = self.slot.trainable()
        opt = self.slot.optimizer()  # its moments carry over from the parent version's windows
        tokens = computed = clipped = with_ratio = skipped = 0
        loss = pg = kl = grad_norm = 0.0
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = pg = kl = 0.0
            for mb, ref, scale in zip(batches, refs, scales, strict=True):
                # The prefix runs once; the rows run in chunks whose activations are kept whole (no
                # recomputation) and freed by each chunk's backward pass: memory is bounded by the
                # chunk, compute is the micro-batch's. Only a row longer than a chunk is recomputed.
                # The prefix runs in float32 even under bf16 autocast: its graph lives until the last
                # chunk's backward, and under autocast it would keep a bf16 copy of every weight
                # (270 MB for SmolLM2-135M) beside the one each chunk's graph keeps.
                prefix = SharedPrefix(model, mb.prefix_ids, collect=True)
                at = 0
                for chunk in mb.split(chunk_tokens):
                    n = int(chunk.next_ids.numel())
                    recompute = s.gradient_checkpointing and chunk.input_ids.numel() > chunk_tokens
                    with self.slot.compute():
                        logp = token_logprobs(model, chunk, checkpoint=recompute, prefix=prefix)
                    part = token_loss(
                        logp,
                        adv[chunk.example],
                        chunk.sampler_logp,
                        chunk.has_sampler,
                        scale=scale[at : at + n],
                        clip=s.ratio_clip,
                        ref_logp=None if ref is None else ref[at : at + n],
                        kl_coef=s.kl_coef,
                    )
                    part.loss.backward()  # type: ignore[no-untyped-call]
                    at += n
                    computed += chunk.computed_tokens
                    loss += float(part.loss.detach())
                    pg += part.pg_sum
                    kl += part.kl_sum
                    clipped += part.clipped
                    with_ratio += part.with_ratio
                prefix.backward()
                tokens += mb.tokens
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm))
            if math.isfinite(grad_norm):
                opt.step()
            else:  # one bad step must not poison the adapter: drop it
                skipped += 1
        model.eval()
        if self.slot.device.type == "cpu":
            release_free_memory()  # the next window starts from the live set, not this one's heap holes
        self.slot.holds = None  # the slot now holds the new, not yet published weights
        metrics = {
            "mean_reward": sum(rewards) / len(rewards),
            "loss": loss,
            "pg_loss": pg,
            "clip_fraction": clipped / with_ratio if with_ratio else 0.0,
            "ratio_tokens": float(with_ratio // max(steps, 1)),
            "completion_tokens": float(total),
            "grad_norm": grad_norm if math.isfinite(grad_norm) else -1.0,  # metrics must be finite
            "skipped_steps": float(skipped),
            "steps": float(steps),
            "computed_tokens": float(computed // max(steps, 1)),
        }
        if s.kl_coef > 0:
            metrics["kl"] = kl
        if new_baseline is not None:
            metrics["reward_baseline"] = new_baseline
        seconds = time.perf_counter() - started
        # In the manifest, so freshness can be split without reading logs: building the batch
        # (tokenising) and the optimizer steps, each measured on its own.
        metrics["batch_s"] = batch_s
        metrics["train_s"] = seconds - batch_s
        return TrainResult(True, new_baseline, metrics, tokens, seconds)
