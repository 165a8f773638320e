"""The names the inference node adds to the OpenAI chat interface, and its route paths.

The node (``inference.proxy``, through ``inference.api``) writes them and the SDK
(``maximum_continual.llm``) reads them; both import them from here, because the SDK must not import
the inference package (FastAPI, boto3) and two copies of a header name drift apart silently.
"""

from __future__ import annotations

__all__ = ["ADAPTER_FIELD", "VERSION_FIELD", "VERSION_HEADER", "Routes"]

#: response header: the adapter version that answered (0 = the base model)
VERSION_HEADER = "x-mc-adapter-version"
#: chat completion body field (and ``/v1/models`` entry field): the same version
VERSION_FIELD = "mc_adapter_version"
#: chat completion body field (and ``/v1/models`` entry field): the name vLLM served it under
ADAPTER_FIELD = "mc_adapter"


class Routes:
    """The node's route paths; the chat and models routes are OpenAI's."""

    CHAT = "/v1/chat/completions"
    MODELS = "/v1/models"
    STATUS = "/status"
    METRICS = "/metrics"
    HEALTH = "/health"
