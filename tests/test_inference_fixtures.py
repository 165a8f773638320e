"""Helpers shared by the inference and SDK tests (no tests here): a PEFT test adapter, running nodes."""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inference.api import NodeClient
from inference.launch import node_process


@functools.cache
def peft_adapter_dir() -> Path:
    """A PEFT LoRA (r=8, alpha=16, q/k/v/o_proj, no bias, random B so it changes outputs), made once."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from devstack import StackSettings
    from devstack.checkpoint import ensure_checkpoint

    folder = Path(tempfile.mkdtemp(prefix="mc-test-adapter-"))
    base = AutoModelForCausalLM.from_pretrained(ensure_checkpoint(StackSettings().cache_dir), dtype=torch.bfloat16)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        bias="none",
        init_lora_weights=False,
    )
    get_peft_model(base, config).save_pretrained(str(folder))
    return folder


@contextmanager
def running_node(topic_prefix: str, cache_dir: Path, *, node_id: str) -> Iterator[NodeClient]:
    """A node as its own process on a free port, reading ``topic_prefix``'s adapter-updates."""
    env = {
        "MC_TOPIC_PREFIX": topic_prefix,
        "MC_NODE_ADAPTER_CACHE_DIR": str(cache_dir / node_id),
        "MC_NODE_ID": node_id,
        "MC_NODE_UNLOAD_GRACE_S": "1.0",
    }
    with node_process(env, log_path=cache_dir / f"{node_id}.log") as client:
        yield client


def wait_for_version(client: NodeClient, model_id: str, version: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        live = client.status().models.get(model_id)
        if live is not None and live.version == version:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.base_url}: {model_id} at {live.version if live else None}, not v{version}")
        time.sleep(0.1)


def vllm_models(vllm_url: str) -> list[str]:
    import httpx

    from schemas.settings import ContractSettings

    resp = httpx.get(f"{vllm_url}/v1/models", headers=ContractSettings().vllm_headers(), timeout=10)
    return [m["id"] for m in resp.json()["data"]]


def vllm_post(url: str, body: dict[str, Any], timeout: float = 120) -> tuple[int, str]:
    """POST JSON to the stack's vLLM with its API key: (status, body text), errors included."""
    import json
    import urllib.error
    import urllib.request

    from schemas.settings import ContractSettings

    headers = {"content-type": "application/json", **ContractSettings().vllm_headers()}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
