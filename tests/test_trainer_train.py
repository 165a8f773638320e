"""One window through WindowTrainer on the real base model (no services): the KL path, the ratio
metrics, and a saved adapter that vLLM's rules accept."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.slow]

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def slot(tmp_path_factory):
    from devstack import StackSettings
    from devstack.checkpoint import checkpoint_dir
    from trainer.service import build_slot
    from trainer.settings import TrainerSettings

    path = checkpoint_dir(StackSettings().cache_dir)
    if not (path / "config.json").exists():
        pytest.skip("the stack's checkpoint is not converted yet")
    settings = TrainerSettings(
        base_model_path=path,
        steps_per_window=2,
        learning_rate=1e-3,
        max_seq_len=96,
        micro_batch_size=2,
        lora_rank=4,
        target_modules=["q_proj", "v_proj"],
        kl_coef=0.1,
        device="cpu",
    )
    return build_slot(settings)


def test_window_with_kl_and_sampler_logprobs(slot, tmp_path) -> None:
    from trainer.bench import synthetic_window
    from trainer.train import WindowTrainer

    window = synthetic_window(slot.tokenizer, 4, seed=1)
    slot.fresh("m")
    result = WindowTrainer(slot.settings, slot).train(window, baseline=None)
    assert result.trained and result.tokens > 0
    m = result.metrics
    # the first step's adapter is the base itself (LoRA B = 0); the reported KL is the last step's: small
    assert 0.0 <= m["kl"] < 0.5
    assert 0.0 <= m["clip_fraction"] <= 1.0 and m["ratio_tokens"] == m["completion_tokens"]
    assert m["reward_baseline"] == pytest.approx(sum(ex.reward.reward for ex in window) / 4)
    assert m["skipped_steps"] == 0.0
    slot.save(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["use_dora"] is False and config["bias"] == "none"
    assert not config.get("modules_to_save")
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]

    # the saved weights load back into the slot and reproduce the trained model's logprobs
    from trainer.model import token_logprobs

    mb = WindowTrainer(slot.settings, slot).batches(window)[0]
    with torch.no_grad():
        trained = token_logprobs(slot.model, mb)
        slot.fresh("m")
        fresh = token_logprobs(slot.model, mb)
        slot.load("m", 1, tmp_path)
        loaded = token_logprobs(slot.model, mb)
    assert not torch.allclose(trained, fresh)
    assert torch.allclose(trained, loaded, atol=1e-5)


def test_the_packed_pass_matches_a_plain_forward_per_sequence(slot) -> None:
    """The shared prefix, the grouped-query attention without copied key/value heads (CPU) and the
    recomputed layers give the logprobs and the gradient of a plain forward of each full sequence
    with transformers' own SDPA attention."""
    from trainer.attention import GQA_SDPA
    from trainer.bench import synthetic_window
    from trainer.model import token_logprobs
    from trainer.train import WindowTrainer

    slot.fresh("m")
    base = slot.model.get_base_model()
    assert base.config._attn_implementation == GQA_SDPA
    torch.manual_seed(0)
    for name, param in slot.model.named_parameters():
        if "lora_B" in name:  # an adapter that changes the outputs (fresh LoRA B is zero)
            param.data.normal_(0.0, 0.02)
    window = synthetic_window(slot.tokenizer, 2, seed=3)
    mb = WindowTrainer(slot.settings, slot).batches(window)[0]
    assert mb.prefix_ids.numel() > 0 and mb.input_ids.shape[0] == 2
    params = slot.trainable()
    slot.model.zero_grad(set_to_none=True)  # an earlier window's last step leaves its gradient
    slot.model.train()
    try:
        packed = token_logprobs(slot.model, mb, checkpoint=True)
        packed.sum().backward()
        packed_grad = [p.grad.clone() for p in params]
        slot.model.zero_grad(set_to_none=True)
        base.set_attn_implementation("sdpa")
        plain = []
        for row in range(mb.input_ids.shape[0]):
            ids = torch.cat([mb.prefix_ids, mb.input_ids[row][mb.attention_mask[row].bool()]])[None]
            logits = slot.model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            logp = logits.log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
            n = int((mb.target_index // mb.input_ids.shape[1] == row).sum())  # its completion: the last n tokens
            plain.append(logp[-n:])
        plain_lp = torch.cat(plain)
        plain_lp.sum().backward()
    finally:
        base.set_attn_implementation(GQA_SDPA)
        slot.model.eval()
    assert torch.allclose(packed.detach(), plain_lp.detach(), atol=3e-5)
    got = torch.cat([g.flatten() for g in packed_grad])
    want = torch.cat([p.grad.flatten() for p in params])
    assert float((got - want).norm()) <= 1e-4 * float(want.norm())  # float32 sums in another order
    slot.model.zero_grad(set_to_none=True)


def test_rows_in_chunks_behind_a_prefix_computed_once_give_the_same_logprobs_and_gradient(slot) -> None:
    """The training loop runs a micro-batch's rows in chunks that read the prefix's keys and values
    as leaves, and sends the leaves' summed gradient through the prefix once: the same logprobs and
    gradient as the whole micro-batch in one pass (which the test above checks against plain SDPA)."""
    from trainer.bench import synthetic_window
    from trainer.model import SharedPrefix, token_logprobs
    from trainer.train import WindowTrainer

    slot.fresh("m")
    torch.manual_seed(1)
    for name, param in slot.model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0.0, 0.02)
    window = synthetic_window(slot.tokenizer, 2, seed=4)
    mb = WindowTrainer(slot.settings, slot).batches(window)[0]
    chunks = mb.split(mb.input_ids.shape[1])  # one row each
    assert len(chunks) == 2 and mb.prefix_ids.numel() > 0
    params = slot.trainable()
    weights = torch.linspace(0.5, 1.5, mb.next_ids.numel())  # a loss that is not symmetric in the tokens
    slot.model.zero_grad(set_to_none=True)
    slot.model.train()
    try:
        whole = token_logprobs(slot.model, mb)
        (weights * whole).sum().backward()
        want = [p.grad.clone() for p in params]
        slot.model.zero_grad(set_to_none=True)
        prefix = SharedPrefix(slot.model, mb.prefix_ids, collect=True)
        parts, at = [], 0
        for chunk in chunks:
            lp = token_logprobs(slot.model, chunk, prefix=prefix)
            (weights[at : at + lp.numel()] * lp).sum().backward()
            parts.append(lp.detach())
            at += lp.numel()
        prefix.backward()
    finally:
        slot.model.eval()
    assert torch.allclose(torch.cat(parts), whole.detach(), atol=3e-5)
    got = torch.cat([p.grad.flatten() for p in params])
    ref = torch.cat([g.flatten() for g in want])
    assert float((got - ref).norm()) <= 1e-4 * float(ref.norm())
    slot.model.zero_grad(set_to_none=True)
