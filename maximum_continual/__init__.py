"""The client SDK: ``MaximumContinual``, ``Tool``, ``MessageT``, ``predict``, ``update``.

Imports without torch or vLLM: the agent loop needs smolagents, httpx and the Kafka producer only.
"""

from maximum_continual.client import MaximumContinual
from maximum_continual.llm import Completion, InferenceError, LLMClient, OpenAIChatClient
from maximum_continual.model import MaximumContinualModel
from maximum_continual.settings import ClientSettings
from maximum_continual.tools import Tool
from maximum_continual.types import MessageT, PredictionResponseT, PredictionResponseWithRewardT

__all__ = [
    "ClientSettings",
    "Completion",
    "InferenceError",
    "LLMClient",
    "MaximumContinual",
    "MaximumContinualModel",
    "MessageT",
    "OpenAIChatClient",
    "PredictionResponseT",
    "PredictionResponseWithRewardT",
    "Tool",
]
