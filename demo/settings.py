"""Settings of the learning demo (``mc demo``): ``MC_DEMO_*`` environment variables.

Precedence: command-line flags > constructor arguments > environment > defaults. The defaults are
what ``make demo`` runs: sized to finish in under 15 minutes on a 2-core CPU machine. The trainer
fields are handed to the trainer process the demo starts (as its ``MC_*`` environment).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from schemas.settings import ContractSettings

__all__ = ["DemoSettings"]


class DemoSettings(ContractSettings):
    """The workload, the evaluation, the trainer's knobs and the time budget of one demo run."""

    # -- rounds and budget ------------------------------------------------------------------------
    demo_rounds: int = Field(12, ge=1, description="most rounds (one adapter version each)")
    demo_minutes: float = Field(14.0, gt=0, description="no new round starts if it would end past this budget")
    demo_examples_per_round: int = Field(16, ge=1, description="rewarded predictions per round (= the window)")
    demo_seed: int = Field(0, description="seed of the problems (the held-out set is fixed by it)")

    # -- held-out evaluation ----------------------------------------------------------------------
    demo_heldout_prompts: int = Field(16, ge=1, description="held-out problems, never trained on")
    demo_heldout_samples: int = Field(3, ge=1, description="samples per held-out problem and version")

    # -- how the agent is served (training and evaluation alike) ----------------------------------
    demo_temperature: float = Field(0.7, ge=0, description="sampling temperature of every model turn")
    demo_max_steps: int = Field(
        1, ge=1, description="agent steps per prediction (each step is one more sequence for the trainer)"
    )
    demo_max_tokens: int = Field(160, ge=16, description="completion tokens per model turn")
    demo_concurrency: int = Field(64, ge=1, description="predictions in flight at once")

    # -- the trainer the demo starts --------------------------------------------------------------
    demo_learning_rate: float = Field(1e-3, gt=0, description="the trainer's MC_LEARNING_RATE")
    demo_steps_per_window: int = Field(1, ge=1, description="the trainer's MC_STEPS_PER_WINDOW")
    demo_lora_rank: int = Field(8, ge=1, description="the trainer's MC_LORA_RANK (and MC_LORA_ALPHA = 2x)")
    demo_window_seconds: float = Field(
        120.0, gt=0, description="the trainer's MC_WINDOW_SECONDS: a safety net, windows close by count"
    )

    # -- runtime ----------------------------------------------------------------------------------
    demo_state_dir: Path = Field(Path(".mc/demo"), description="one folder per run: logs, pid files, plot, results")
    demo_start_timeout_s: float = Field(180.0, gt=0, description="wait this long for each part to come up")
    demo_version_timeout_s: float = Field(300.0, gt=0, description="wait this long for a round's adapter to go live")
    demo_keep_topics: bool = Field(False, description="keep the run's topics afterwards (default: delete them)")
