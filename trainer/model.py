"""The base model with one trainable LoRA slot, loaded with the weights of a model's adapter version.

One base model serves every ``model_id``: before a window the slot takes the parent version's
weights (or a fresh LoRA for v0), so switching models costs a file read, not a base reload.
Adapters are made the way vLLM accepts them: no modules_to_save, no DoRA, no bias.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.errors import AdapterError, ConfigurationError
from trainer.attention import use_grouped_attention
from trainer.batch import MicroBatch
from trainer.settings import TrainerSettings

if TYPE_CHECKING:
    import torch

__all__ = [
    "OPTIMIZER_FILE",
    "AdapterSlot",
    "SharedPrefix",
    "choose_device",
    "cpu_autocast_dtype",
    "load_base",
    "native_bf16",
    "token_logprobs",
]

#: AdamW's moments and step count, saved beside the adapter so a restarted trainer continues them
OPTIMIZER_FILE = "optimizer.safetensors"
#: completion tokens per LM-head chunk when recomputing (256 x 49,152 floats = 48 MiB of logits)
_HEAD_CHUNK = 256

_log = logging.getLogger(__name__)


def choose_device(preference: str = "auto") -> torch.device:
    import torch

    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigurationError("MC_TRAINER_DEVICE=cuda but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), as oneDNN uses it."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The dtype CPU forward passes autocast to (None: plain float32; never on CUDA, whose weights
    are bf16 already). Measured on a 2-core AMD EPYC with AVX512-BF16, one 16-example window on one
    core: 23.0 s in float32, 15.6 s under bf16 autocast."""
    import torch

    if device.type != "cpu" or setting == "float32":
        return None
    if setting == "bfloat16" or native_bf16():
        return torch.bfloat16
    return None


def load_base(path: Path, device: torch.device) -> tuple[Any, Any]:
    """The causal LM (bf16 on CUDA, fp32 on the CPU where bf16 matmuls are slow) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").exists():
        raise ConfigurationError(f"{path} is not a Hugging Face model folder (no config.json)")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model = model.to(device)
    if device.type == "cpu":
        use_grouped_attention(model)  # no copies of the key/value heads (trainer/attention.py)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _read_only(layer: Any) -> None:
    """Make a filled DynamicLayer return past + new without storing it: the suffix pass can then be
    recomputed (gradient checkpointing), and every replay sees the same shared prefix."""
    import torch

    keys, values = layer.keys, layer.values

    def update(key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)

    layer.update = update


def _checkpointing(backbone: Any, on: bool) -> None:
    """Recompute each decoder layer in the backward pass instead of keeping its activations."""
    import functools

    import torch.utils.checkpoint

    for layer in backbone.layers:
        if on and not hasattr(layer, "_gradient_checkpointing_func"):
            recompute = functools.partial(torch.utils.checkpoint.checkpoint, use_reentrant=False)
            layer._gradient_checkpointing_func = recompute
        layer._can_checkpoint_with_cache = True  # the shared prefix is read-only: a replay reads the same
        layer.gradient_checkpointing = on


class SharedPrefix:
    """A micro-batch's shared prefix (the app's system prompt), run once for all its chunks of rows.

    Its keys and values keep their graph, so every row that attends to them sends its gradient into
    them. With ``collect``, each chunk reads detached copies (leaves that sum the gradient of every
    chunk's backward pass) and :meth:`backward` sends the sum through the prefix's graph once: the
    rows can then run, and free their activations, chunk by chunk while the prefix is computed once
    (exact: the gradient of a sum is the sum of the gradients). Without ``collect`` the keys and
    values are read as they are, and the loss's own backward pass goes through the prefix.
    """

    def __init__(self, model: Any, prefix_ids: torch.Tensor, *, collect: bool = False) -> None:
        import torch

        self._out: list[torch.Tensor] = []
        self._read: list[torch.Tensor] = []
        self._collect = False
        self.length = int(prefix_ids.shape[0])
        if not self.length:
            return
        shared = _backbone(model)(input_ids=prefix_ids[None], use_cache=True).past_key_values
        self._out = [t for layer in shared.layers for t in (layer.keys, layer.values)]
        self._collect = collect and torch.is_grad_enabled()
        # a key or value with no graph (layer 0's keys when k_proj has no LoRA) needs no leaf
        self._read = [t.detach().requires_grad_() if self._collect and t.requires_grad else t for t in self._out]

    def cache(self, rows: int) -> Any:
        """A read-only cache of the prefix for ``rows`` rows (expanded, not copied)."""
        from transformers import DynamicCache

        pairs = [
            (self._read[i].expand(rows, -1, -1, -1), self._read[i + 1].expand(rows, -1, -1, -1))
            for i in range(0, len(self._read), 2)
        ]
        past = DynamicCache(ddp_cache_data=pairs)
        for layer in past.layers:
            _read_only(layer)
        return past

    def backward(self) -> None:
        """Send the gradient the chunks left in the prefix's keys and values through its graph."""
        import torch

        if not self._collect:
            return
        pairs = [
            (out, leaf.grad)
            for out, leaf in zip(self._out, self._read, strict=True)
            if leaf is not out and leaf.grad is not None
        ]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        self._out, self._read = [], []


def _backbone(model: Any) -> Any:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model


def token_logprobs(
    model: Any, mb: MicroBatch, *, checkpoint: bool = False, prefix: SharedPrefix | None = None
) -> torch.Tensor:
    """log pi(token) of every completion token of the micro-batch, flat, in ``mb.next_ids`` order.

    The shared prefix runs once (``prefix``, when the caller runs the batch's rows in chunks; else
    here), with its graph: its keys and values get the gradient of every row that attends to them,
    so the result and its gradient are those of the full sequences. The LM head then runs only on
    the positions that predict a completion token, and the log-probability is a gather minus a
    log-sum-exp. ``checkpoint`` recomputes the suffixes' decoder layers during the backward pass, so
    a micro-batch keeps one hidden state per layer and token for backward instead of all the layer's
    activations (about 20x less memory for about a third more compute).
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone, head = base.model, base.lm_head
    rows, width = mb.input_ids.shape
    if prefix is None:
        prefix = SharedPrefix(model, mb.prefix_ids)
    p = prefix.length
    past = None
    mask = mb.attention_mask
    if p:
        past = prefix.cache(rows)
        mask = torch.cat([mask.new_ones(rows, p), mask], dim=1)
    positions = torch.arange(p, p + width, device=mb.input_ids.device)[None].expand(rows, -1)
    recompute = checkpoint and torch.is_grad_enabled() and base.training
    _checkpointing(backbone, recompute)
    try:
        hidden = backbone(
            input_ids=mb.input_ids, attention_mask=mask, position_ids=positions, past_key_values=past, use_cache=False
        ).last_hidden_state
    finally:
        if recompute:
            _checkpointing(backbone, False)
    picked = hidden.reshape(rows * width, -1).index_select(0, mb.target_index)
    if not recompute:
        return _head_logprobs(head, picked, mb.next_ids)
    # [tokens, vocabulary] logits are the largest tensors of the pass (49,152 floats a token): in
    # chunks, recomputed in the backward pass, only one chunk's logits are alive at a time.
    from torch.utils.checkpoint import checkpoint as recompute_in_backward

    parts = [
        recompute_in_backward(
            _head_logprobs, head, picked[i : i + _HEAD_CHUNK], mb.next_ids[i : i + _HEAD_CHUNK], use_reentrant=False
        )
        for i in range(0, picked.shape[0], _HEAD_CHUNK)
    ]
    return torch.cat(parts)


def _head_logprobs(head: Any, hidden: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
    """log-softmax of the LM head's logits at ``next_ids``: a gather minus a log-sum-exp."""
    logits = head(hidden).float()
    logp: torch.Tensor = logits.gather(-1, next_ids[:, None]).squeeze(-1) - logits.logsumexp(-1)
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
        self._optimizer: Any = None
        self.autocast_dtype = cpu_autocast_dtype(settings.cpu_compute, device)

    def compute(self) -> contextlib.AbstractContextManager[Any]:
        """The context forward passes run in: bf16 autocast where :func:`cpu_autocast_dtype` says so."""
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

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
        self._optimizer = None  # its state belongs to the old parameters

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
        self._optimizer = None
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
        self._optimizer = None
        state = folder / OPTIMIZER_FILE
        if state.exists():
            self._load_optimizer(state)
        self.holds = (model_id, version)

    def save(self, folder: Path) -> None:
        """The adapter (what vLLM loads) and, beside it, the optimizer's state (trainer bookkeeping)."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder))
        if self._optimizer is not None:
            save_file(self._optimizer_tensors(), str(folder / OPTIMIZER_FILE))

    # -- the optimizer: one AdamW whose moments follow the adapter from version to version ---------

    def optimizer(self) -> Any:
        """AdamW over the trainable weights; its state is the parent version's when it was saved.

        Keeping the moments across windows matters for a continual learner: a fresh AdamW's first
        steps are sign-like (m/sqrt(v) ~ ±1 for every weight) whatever the gradient's scale.
        """
        import torch

        if self._optimizer is None:
            s = self.settings
            self._optimizer = torch.optim.AdamW(self.trainable(), lr=s.learning_rate, weight_decay=s.weight_decay)
        return self._optimizer

    def _named_trainable(self) -> list[tuple[str, Any]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _optimizer_tensors(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        state = self._optimizer.state
        for name, param in self._named_trainable():
            for key, value in state.get(param, {}).items():
                out[f"{name}::{key}"] = value.detach().reshape(value.shape).contiguous().cpu()
        return out

    def _load_optimizer(self, path: Path) -> None:
        """Moments saved by :meth:`save`; a file that does not fit these weights is ignored (logged)."""
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path), device=str(self.device))
        except Exception as exc:  # a damaged file costs the moments, never the adapter
            _log.warning("optimizer state %s unreadable, starting a fresh one: %s", path, exc)
            return
        opt = self.optimizer()
        named = self._named_trainable()
        if {f"{n}::exp_avg" for n, _ in named} != {k for k in tensors if k.endswith("::exp_avg")}:
            _log.warning("optimizer state %s does not match the adapter's weights: starting a fresh one", path)
            return
        by_param: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            name, field = key.rsplit("::", 1)
            by_param.setdefault(name, {})[field] = value
        for name, param in named:
            opt.state[param] = by_param[name]

    def trainable(self) -> list[Any]:
        return [p for p in self.model.parameters() if p.requires_grad]
