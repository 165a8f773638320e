"""Settings of the live learning loop (``mc demo``, and benchmarks built on it): ``MC_DEMO_*``.

Precedence: command-line flags > constructor arguments > environment > defaults. The defaults are
what ``make demo`` runs: the whole run, start-up and teardown included, ends within ``demo_minutes``
(+ a little) on a 2-core CPU machine.

There are deliberately no learning settings here: the trainer the demo starts runs with its own
defaults (window size, learning rate, LoRA shape), so the demo shows what production does. The loop
reads the trainer's window size only to pace itself (:mod:`demo.pacing`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from schemas.settings import ContractSettings

__all__ = ["DemoSettings"]


class DemoSettings(ContractSettings):
    """The workload, its pacing, the time budget and the runtime of one live run."""

    #: its own variables are MC_DEMO_<FIELD> (schemas.settings.env_name)
    part_prefix: ClassVar[str | None] = "DEMO"

    # -- budget -----------------------------------------------------------------------------------
    demo_minutes: float = Field(
        14.0, gt=0, description="the whole run, start-up to teardown; generation stops in time to end by then"
    )
    demo_max_versions: int | None = Field(
        None, ge=1, description="also stop once this many versions went live and the newest answered a window"
    )
    demo_teardown_s: float = Field(40.0, ge=0, description="time kept back for stopping the parts at the end")
    demo_cycle_guess_s: float = Field(
        150.0, gt=0, description="expected time from one version going live to the next, until one was measured"
    )

    # -- the live traffic -------------------------------------------------------------------------
    demo_max_ahead: int = Field(
        1, ge=0, description="windows of generation allowed ahead of the one the trainer is on (data freshness)"
    )
    demo_concurrency: int = Field(64, ge=1, description="predictions in flight at once, at most")
    demo_temperature: float = Field(0.7, ge=0, description="sampling temperature of every model turn")
    demo_max_tokens: int = Field(160, ge=16, description="completion tokens per model turn")
    demo_seed: int = Field(0, description="seed of the prompt stream")

    # -- the measurement --------------------------------------------------------------------------
    demo_after_min_samples: int = Field(
        48, ge=1, description="'after' pools the newest versions' live traffic until it has this many samples"
    )

    # -- runtime ----------------------------------------------------------------------------------
    demo_state_dir: Path = Field(Path(".mc/demo"), description="one folder per run: logs, pid files, plot, results")
    demo_start_timeout_s: float = Field(180.0, gt=0, description="wait this long for each part to come up")
    demo_cpu_split: bool = Field(
        True,
        description="run the app (this process and its sandboxes), the node and the processor on the cores of "
        "vLLM's model worker, so the trainer has the other cores to itself (one machine stands in for several)",
    )
    demo_version_timeout_s: float = Field(
        300.0, gt=0, description="fail when a full window waits this long without a new version going live"
    )
    demo_keep_topics: bool = Field(False, description="keep the run's topics afterwards (default: delete them)")
