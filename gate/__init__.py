"""The canary gate: promotes or refuses a new adapter version on the reward it earns (issue #14).

``decide`` is the sequential test (pure); ``GateCore`` the state without Kafka; ``GateService`` the
part that reads the topics and announces (``mc gate``).
"""

from gate.core import GateCore
from gate.decide import GateParams, RewardStats, Verdict, decide
from gate.service import GateService
from gate.settings import GateSettings

__all__ = ["GateCore", "GateParams", "GateService", "GateSettings", "RewardStats", "Verdict", "decide"]
