"""Settings of the trainer (``MC_*`` environment variables; arguments > env > defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from schemas.settings import ContractSettings
from trainer.objective import LossNormalization

__all__ = ["TrainerSettings"]


class TrainerSettings(ContractSettings):
    """Everything the trainer reads. Frozen, like every settings object of the project."""

    #: its own variables are MC_TRAINER_<FIELD> (schemas.settings.env_name)
    part_prefix: ClassVar[str | None] = "TRAINER"

    # -- where the base model is ------------------------------------------------------------------
    base_model_path: Path | None = Field(
        None,
        description="HF causal-LM folder the adapters are trained on; unset: `mc trainer` uses the "
        "local stack's converted SmolLM2-135M checkpoint",
    )

    # -- windows ----------------------------------------------------------------------------------
    window_examples: int = Field(16, ge=1, description="a window closes after this many new examples")
    window_seconds: float = Field(60.0, gt=0, description="... or this long after its first example")
    group_id: str = Field("mc-trainer", description="consumer group on training-examples")
    group_instance_id: str | None = Field(
        None, description="static group membership: a restarted trainer takes its partitions back at once"
    )
    session_timeout_ms: int = Field(45_000, ge=1000, description="how long the group waits for a dead trainer")

    # -- optimisation -----------------------------------------------------------------------------
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate")
    steps_per_window: int = Field(1, ge=1, description="optimizer steps on each window")
    micro_batch_size: int = Field(16, ge=1, description="most sequences per forward pass (gradient accumulation)")
    micro_batch_tokens: int = Field(
        4096,
        ge=64,
        description="most tokens one forward pass computes (shared prefix once, padding included): bounds "
        "the activations kept for backward, so the trainer's memory does not grow with trajectory length",
    )
    max_seq_len: int = Field(1024, ge=8, description="longer sequences keep their last tokens")
    activation_tokens: int | None = Field(
        None,
        ge=1,
        description="padded tokens whose activations the backward pass keeps at once: a micro-batch's rows run "
        "in chunks of at most this many tokens behind its prefix (computed once); about 1.3 MB a token in float32 "
        "for SmolLM2-135M with LoRA on every linear layer. Unset: 192 on the CPU (the memory target of 2.5 GB), "
        "MC_TRAINER_MICRO_BATCH_TOKENS on CUDA (one chunk: small chunks would starve the GPU)",
    )
    gradient_checkpointing: bool = Field(
        True,
        description="recompute the decoder layers in the backward pass for a row longer than "
        "MC_TRAINER_ACTIVATION_TOKENS (a chunk of one row): a fraction of its activation memory for about a third "
        "more compute",
    )
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    seed: int = 0

    # -- LoRA (vLLM refuses modules_to_save, DoRA, bias and ranks above its --max-lora-rank) -------
    lora_rank: int = Field(8, ge=1, le=256)
    lora_alpha: int = Field(16, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="module names that get LoRA (JSON list in the environment)",
    )

    # -- objective --------------------------------------------------------------------------------
    kl_coef: float = Field(
        0.1,
        ge=0,
        description="weight of the KL penalty to the base model (adapter off; one more forward pass per window)",
    )
    loss_normalization: LossNormalization = Field(
        "sequences",
        description="sequences: every example of a window weighs the same, its tokens share it; tokens: every "
        "completion token weighs the same (long answers weigh more)",
    )
    negative_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="scale of the negative advantages (worse-than-baseline samples): 1 = the plain policy gradient; "
        "0 = fine-tune on the better-than-baseline samples only: faster at first in `mc bench learn`, then "
        "collapsed onto the majority pattern in longer demo runs; 0.5 (default) learned faster than 1 and did not "
        "collapse in 5 demo runs (README, 'Choosing the objective')",
    )
    ratio_clip: float = Field(4.0, ge=1, description="C in min(pi_theta/mu, C)")
    baseline_decay: float = Field(0.9, ge=0, lt=1, description="EMA decay of the per-model reward baseline")

    # -- runtime ----------------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    cpu_compute: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="CPU training: the matmuls' precision (weights, optimizer and loss stay float32); auto = "
        "bfloat16 where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), float32 elsewhere (AVX2 only "
        "emulates bf16, which is slower than float32)",
    )
    mmap_threshold: int = Field(
        2 * 1024 * 1024,
        ge=0,
        description="CPU training: glibc's M_MMAP_THRESHOLD in bytes (0 = glibc's own); a fixed threshold gives "
        "freed activations back to the system, which bounds the peak RSS at some cost in page faults",
    )
    huge_pages: bool = Field(
        True,
        description="CPU training: torch's allocator asks for transparent huge pages for tensors of 2 MiB and "
        "more (THP_MEM_ALLOC_ENABLE=1, set before torch is imported): fewer page faults for the activations "
        "that the mmap threshold hands back to the system",
    )
    cpus: str = Field(
        "auto",
        description="CPU training: cores to compute on; auto = those no vLLM model worker on this machine is "
        "bound to (all if none is), 'all', or a list like '1,2'",
    )
    work_dir: Path = Field(Path(".mc/trainer"), description="local scratch: saved and downloaded adapters")
    trained_ids_horizon: int = Field(
        64,
        ge=1,
        description="versions whose example ids are remembered: an example re-read after this many newer "
        "versions is trained again (memory and start-up reads stay bounded)",
    )
    publish_timeout_s: float = Field(60.0, gt=0, description="wait this long for the AdapterUpdate's ack")
    canary_enabled: bool = Field(
        False,
        description="announce each new version as a candidate for the canary gate (`mc gate`) instead of live; "
        "off: every new version goes live at once",
    )
    canary_models: dict[str, bool] = Field(
        default_factory=dict, description='per-model override of MC_TRAINER_CANARY_ENABLED, JSON: {"model-a": true}'
    )

    # -- observability --------------------------------------------------------------------------
    trainer_metrics_host: str = Field("127.0.0.1", description="address `mc trainer` serves /metrics on")
    trainer_metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="port of the trainer's Prometheus /metrics (0: any free port; unset or empty: no server). Off "
        "by default: several trainers of one group may share a host, and a fixed default port would stop the "
        "second; a deployment names one per trainer (docker-compose.yml: 8200)",
    )

    # -- failures ---------------------------------------------------------------------------------
    window_attempts: int = Field(
        3, ge=1, description="attempts at a window that fails to train or save before it is dead-lettered"
    )
    retry_initial_s: float = Field(0.5, gt=0, description="first backoff after a transient S3 or Kafka failure")
    retry_max_s: float = Field(30.0, gt=0, description="longest backoff between retries of a transient failure")
    claim_wait_s: float = Field(
        30.0,
        ge=0,
        description="how long to wait for the manifest of another writer whose files hold a version number; "
        "without one by then the writer died and the number is given up",
    )
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description="librdkafka's max.poll.interval.ms; training runs off the poll loop, so a window of any "
        "length keeps the trainer in its group (must be >= MC_TRAINER_SESSION_TIMEOUT_MS)",
    )

    @field_validator("trainer_metrics_port", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        # MC_TRAINER_METRICS_PORT= (empty, as compose writes an unset variable) turns the server off
        return None if isinstance(value, str) and not value.strip() else value
