"""Settings of the gate (``mc gate``): ``MC_GATE_*``, plus the contract's Kafka and S3 and the signing key.

Precedence: constructor arguments > ``MC_*`` environment variables > this install's secrets file >
defaults. The gate signs its decisions with ``MC_ADAPTER_SIGNING_KEY`` (nodes serve only signed
updates), so it is trusted like a trainer.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from gate.decide import GateParams
from producers.settings import ProducerSettings

__all__ = ["GateSettings"]


class GateSettings(ProducerSettings):
    """Everything the gate reads. The test's parameters are documented in :mod:`gate.decide`."""

    #: its own variables are MC_GATE_<FIELD> (schemas.settings.env_name)
    part_prefix: ClassVar[str | None] = "GATE"

    gate_margin: float = Field(
        0.1, ge=0, description="promote when the candidate's mean reward is not below live's by more than this"
    )
    gate_confidence: float = Field(0.95, gt=0, lt=1, description="1 - the chance of a wrong verdict, over all looks")
    gate_min_rewards: int = Field(20, ge=2, description="rewards each arm needs before a look can decide")
    gate_check_every: int = Field(20, ge=1, description="the gate looks each time the candidate has this many more")
    gate_max_rewards: int = Field(
        300, ge=1, description="candidate rewards after which, with no verdict, the live version stays"
    )
    gate_var_floor: float = Field(0.01, gt=0, description="floor of each arm's reward variance in the test")
    gate_poll_s: float = Field(0.5, gt=0, description="longest wait for new records per loop")
    publish_timeout_s: float = Field(30.0, gt=0, description="how long an announcement may take to be acknowledged")

    def params(self) -> GateParams:
        return GateParams(
            margin=self.gate_margin,
            confidence=self.gate_confidence,
            min_rewards=self.gate_min_rewards,
            check_every=self.gate_check_every,
            max_rewards=self.gate_max_rewards,
            var_floor=self.gate_var_floor,
        )
