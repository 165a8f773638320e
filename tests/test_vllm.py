"""The real vLLM server: a chat completion, and a PEFT adapter loaded at runtime."""

from __future__ import annotations

import contextlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack import StackSettings
from devstack.checkpoint import ensure_checkpoint
from devstack.cpu import choose_dtype, cpu_flags
from tests.test_inference_fixtures import vllm_models, vllm_post

pytestmark = [pytest.mark.vllm]


def _chat(s: StackSettings, model: str) -> dict[str, Any]:
    status, text = vllm_post(
        f"{s.vllm_url}/v1/chat/completions",
        {
            "model": model,
            "temperature": 0,
            "max_tokens": 8,
            "logprobs": True,
            "messages": [{"role": "user", "content": "What is 2+3? Answer with a number."}],
        },
    )
    assert status == 200, text
    return json.loads(text)  # type: ignore[no-any-return]


def test_chat_completion(vllm: StackSettings) -> None:
    out = _chat(vllm, vllm.base_model_name)
    content = out["choices"][0]["message"]["content"]
    assert "5" in content
    assert out["choices"][0]["logprobs"]["content"], "the server returns the sampled tokens' logprobs"


@pytest.fixture(scope="module")
def fresh_adapter(vllm: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA made now on the served checkpoint, with non-zero weights so it changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(ensure_checkpoint(vllm.cache_dir), dtype=torch.float32)
    cfg = LoraConfig(
        r=8,
        lora_alpha=16,
        # every linear layer, like the trainer's adapters: vLLM merges q/k/v and gate/up into sliced layers
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=False,
        lora_dropout=0.0,
        bias="none",
    )
    model = get_peft_model(base, cfg)
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(str(out))
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    return out


def test_runtime_lora_load_of_a_fresh_peft_adapter(vllm: StackSettings, fresh_adapter: Path) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}@v1"
    status, text = vllm_post(
        f"{vllm.vllm_url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(fresh_adapter)}
    )
    assert status == 200, text
    try:
        assert name in vllm_models(vllm.vllm_url)
        base = _chat(vllm, vllm.base_model_name)["choices"][0]["logprobs"]["content"][0]
        tuned = _chat(vllm, name)["choices"][0]["logprobs"]["content"][0]
        # same prompt, greedy: the adapter's non-zero weights must move the first token's logprob
        assert (tuned["token"], round(tuned["logprob"], 3)) != (base["token"], round(base["logprob"], 3))
    finally:
        status, text = vllm_post(f"{vllm.vllm_url}/v1/unload_lora_adapter", {"lora_name": name})
        assert status == 200, text


def _completion(s: StackSettings, model: str, prompt: list[int]) -> tuple[list[int], list[float]]:
    status, text = vllm_post(
        f"{s.vllm_url}/v1/completions",
        {
            "model": model,
            "prompt": prompt,
            "temperature": 0,
            "max_tokens": 12,
            "logprobs": 1,
            "return_tokens_as_token_ids": True,
        },
    )
    assert status == 200, text
    lp = json.loads(text)["choices"][0]["logprobs"]
    return [int(t.split(":", 1)[1]) for t in lp["tokens"]], [float(x) for x in lp["token_logprobs"]]


def test_served_logprobs_with_an_adapter_match_peft(vllm: StackSettings, fresh_adapter: Path) -> None:
    """What vLLM computes with an adapter (devstack's LoRA ops, one-adapter and mixed batches) is what
    PEFT computes: the trainer's importance ratios compare the two, token by token."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = ensure_checkpoint(vllm.cache_dir)
    tok = AutoTokenizer.from_pretrained(checkpoint)
    prompts = [tok.encode(t) for t in ("What is 7 times 6? Answer:", "def add(a, b):\n", "The capital of France")]
    name = f"test-{uuid.uuid4().hex[:8]}@v1"
    status, text = vllm_post(
        f"{vllm.vllm_url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(fresh_adapter)}
    )
    assert status == 200, text
    try:
        # concurrent: batches with the adapter alone and with the base model beside it
        jobs = [(model, p) for p in prompts for model in (name, vllm.base_model_name)]
        with ThreadPoolExecutor(len(jobs)) as pool:
            served = list(pool.map(lambda job: _completion(vllm, *job), jobs))
    finally:
        vllm_post(f"{vllm.vllm_url}/v1/unload_lora_adapter", {"lora_name": name})
    base = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(fresh_adapter)).eval()
    worst = {True: 0.0, False: 0.0}
    moved = 0.0
    for (model_name, prompt), (ids, logprobs) in zip(jobs, served, strict=True):
        adapter = model_name == name
        seq = torch.tensor([prompt + ids])
        with torch.no_grad(), contextlib.nullcontext() if adapter else model.disable_adapter():
            logits = model(seq).logits[0, len(prompt) - 1 : -1].float()
        ref = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None])[:, 0]
        worst[adapter] = max(worst[adapter], float((ref - torch.tensor(logprobs)).abs().max()))
        if adapter:
            with torch.no_grad(), model.disable_adapter():
                off = torch.log_softmax(model(seq).logits[0, len(prompt) - 1 : -1].float(), -1)
            moved = max(moved, float((off.gather(1, torch.tensor(ids)[:, None])[:, 0] - ref).abs().max()))
    assert moved > 0.5, "the adapter must change the log-probs for this comparison to mean anything"
    # float32 serving matches PEFT's float32 to rounding; bf16 serving (CPUs with AMX, devstack/cpu.py) rounds
    # logits to 8 significant bits: measured 0.14-0.15 nats at worst on an AMX Xeon, base and adapter alike
    tolerance = 0.02 if choose_dtype(cpu_flags(), vllm.vllm_dtype) == "float32" else 0.25
    assert worst[True] < tolerance and worst[False] < tolerance, worst


def test_unknown_adapter_is_a_clear_error(vllm: StackSettings) -> None:
    status, text = vllm_post(
        f"{vllm.vllm_url}/v1/chat/completions",
        {"model": "no-such-adapter", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 404, text
