"""Put adapter versions where nodes find them: upload to S3 with sha256s, announce an AdapterUpdate.

Used by the swap benchmark and the tests (the trainer publishes through the same store, with its own
bookkeeping and the crash order of :mod:`trainer.publish`). Also writes
*synthetic* LoRA adapters (random A/B matrices in PEFT's file layout) without torch or PEFT, so the
benchmark can make as many distinct versions as it needs from the base checkpoint's config alone.
"""

from __future__ import annotations

import json
import random
from array import array
from pathlib import Path
from typing import Any

from schemas.adapter_store import AdapterStore
from schemas.errors import VersionTaken
from schemas.events import AdapterUpdate
from schemas.settings import ContractSettings
from schemas.signing import sign_update

__all__ = ["TARGET_MODULES", "delete_adapters", "upload_adapter", "write_synthetic_adapter"]

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def _save_safetensors(tensors: dict[str, tuple[list[int], array[float]]], path: Path) -> None:
    """float32 tensors into a safetensors file, written by ``safetensors`` itself (the format's owner)."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file(
        {name: np.frombuffer(data, dtype="<f4").reshape(shape) for name, (shape, data) in tensors.items()}, str(path)
    )


def write_synthetic_adapter(
    checkpoint_dir: Path, folder: Path, *, seed: int, r: int = 8, alpha: int = 16, scale: float = 0.01
) -> Path:
    """A random LoRA (r, alpha, q/k/v/o_proj, no bias) for the Llama checkpoint in ``checkpoint_dir``."""
    cfg = json.loads((checkpoint_dir / "config.json").read_text())
    hidden, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    head_dim = cfg.get("head_dim") or hidden // cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * head_dim
    q_out = cfg["num_attention_heads"] * head_dim
    dims = {"q_proj": (hidden, q_out), "k_proj": (hidden, kv), "v_proj": (hidden, kv), "o_proj": (q_out, hidden)}
    rng = random.Random(seed)
    tensors: dict[str, tuple[list[int], array[float]]] = {}
    for layer in range(layers):
        for module, (d_in, d_out) in dims.items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            for part, shape in (("lora_A", [r, d_in]), ("lora_B", [d_out, r])):
                values = array("f", (rng.gauss(0, scale) for _ in range(shape[0] * shape[1])))
                tensors[f"{prefix}.{part}.weight"] = (shape, values)
    folder.mkdir(parents=True, exist_ok=True)
    _save_safetensors(tensors, folder / "adapter_model.safetensors")
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(checkpoint_dir),
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": list(TARGET_MODULES),
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "use_dora": False,
        "use_rslora": False,
        "inference_mode": True,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return folder


def upload_adapter(
    s3: Any,
    settings: ContractSettings,
    model_id: str,
    version: int,
    folder: Path,
    *,
    parent_version: int | None = None,
    corrupt: bool = False,
) -> AdapterUpdate:
    """Upload ``folder``'s adapter files as ``version`` and return the AdapterUpdate announcing it.

    Written through the contract's :class:`~schemas.adapter_store.AdapterStore`, as the trainer writes:
    each file and the manifest only if absent, so a version is never rewritten (raises
    :class:`~schemas.errors.VersionTaken` for other bytes under an existing version). The manifest is
    the signed update, what a trainer would announce. ``corrupt=True`` announces a wrong sha256 for
    the weights (to test that nodes refuse it).
    """
    store = AdapterStore(settings, client=s3)
    files = store.upload(model_id, version, folder)
    if corrupt:
        files["adapter_model.safetensors"] = "0" * 64
    update = AdapterUpdate(
        model_id=model_id,
        version=version,
        uri=store.uri(model_id, version),
        files=files,
        base_model=settings.base_model_name,
        parent_version=parent_version,
    )
    update = sign_update(update, settings.signing_key())  # what a trainer would announce
    if not store.put_manifest(update):
        raise VersionTaken(f"{model_id} v{version} already has a manifest in s3://{store.bucket}/")
    return update


def delete_adapters(s3: Any, settings: ContractSettings, model_id: str) -> None:
    """Remove every stored version of ``model_id`` (benchmark and test clean-up)."""
    AdapterStore(settings, client=s3).delete_model(model_id)
