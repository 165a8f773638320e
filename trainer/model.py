"""The base model with one trainable LoRA slot, loaded with the weights of a model's adapter version.

One base model serves every ``model_id``: before a window the slot takes the parent version's
weights (or a fresh LoRA for v0), so switching models costs a file read, not a base reload.
Adapters are made the way vLLM accepts them: no modules_to_save, no DoRA, no bias.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.errors import AdapterError, ConfigurationError
from trainer.batch import MicroBatch
from trainer.settings import TrainerSettings

if TYPE_CHECKING:
    import torch

__all__ = ["AdapterSlot", "choose_device", "load_base", "token_logprobs"]

_log = logging.getLogger(__name__)


def choose_device(preference: str = "auto") -> torch.device:
    import torch

    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigurationError("MC_DEVICE=cuda but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def load_base(path: Path, device: torch.device) -> tuple[Any, Any]:
    """The causal LM (bf16 on CUDA, fp32 on the CPU where bf16 matmuls are slow) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").exists():
        raise ConfigurationError(f"{path} is not a Hugging Face model folder (no config.json)")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def token_logprobs(model: Any, mb: MicroBatch) -> torch.Tensor:
    """log pi(token) of every completion token of the micro-batch, flat, in ``mb.next_ids`` order."""
    out = model(
        input_ids=mb.input_ids,
        attention_mask=mb.attention_mask,
        position_ids=mb.position_ids,
        logits_to_keep=mb.keep,
        use_cache=False,
    )
    logits = out.logits[:, :-1][mb.target].float()
    logp: torch.Tensor = logits.log_softmax(-1).gather(-1, mb.next_ids[:, None]).squeeze(-1)
    return logp


def _seed_of(model_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{model_id}".encode()).digest()[:4], "big")


class AdapterSlot:
    """A PEFT model with one adapter ("default") and a record of which version it holds."""

    def __init__(self, base: Any, tokenizer: Any, settings: TrainerSettings, device: torch.device) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device
        self.model: Any = None
        self._base = base
        #: (model_id, version) whose weights the slot holds, None when trained past them
        self.holds: tuple[str, int] | None = None
        self._shape: tuple[int, int, frozenset[str]] | None = None

    def _config(self, rank: int, alpha: int, targets: list[str]) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=rank,
            lora_alpha=alpha,
            target_modules=targets,
            lora_dropout=self.settings.lora_dropout,
            bias="none",
            use_dora=False,
            task_type="CAUSAL_LM",
        )

    def _shape_to(self, rank: int, alpha: int, targets: list[str]) -> None:
        from peft import get_peft_model

        shape = (rank, alpha, frozenset(targets))
        if shape == self._shape:
            return
        if self.model is not None:
            self._base = self.model.unload()  # strips the LoRA layers, gives the plain base back
        self.model = get_peft_model(self._base, self._config(rank, alpha, targets))
        self._shape = shape

    def fresh(self, model_id: str) -> None:
        """A new LoRA (v0 → v1): A random with a seed per model, B zero, so it starts as the base."""
        import torch
        from peft.tuners.lora import LoraLayer

        s = self.settings
        self._shape_to(s.lora_rank, s.lora_alpha, list(s.target_modules))
        torch.manual_seed(_seed_of(model_id, s.seed))
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                module.reset_lora_parameters("default", True)  # type: ignore[no-untyped-call]
        self.holds = (model_id, 0)

    def load(self, model_id: str, version: int, folder: Path) -> None:
        """The weights of a saved adapter, with the LoRA shape it was saved with."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        cfg = json.loads((folder / "adapter_config.json").read_text())
        targets = cfg.get("target_modules") or []
        if isinstance(targets, str):
            raise AdapterError(f"{model_id} v{version}: target_modules as a regex is not supported")
        self._shape_to(int(cfg["r"]), int(cfg["lora_alpha"]), sorted(targets))
        weights = load_file(str(folder / "adapter_model.safetensors"), device=str(self.device))
        result: Any = set_peft_model_state_dict(self.model, weights)
        if result.unexpected_keys:
            raise AdapterError(f"{model_id} v{version}: unexpected adapter weights {result.unexpected_keys[:3]}")
        self.holds = (model_id, version)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder))

    def trainable(self) -> list[Any]:
        return [p for p in self.model.parameters() if p.requires_grad]
