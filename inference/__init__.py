"""The inference node: adapter watcher and OpenAI-compatible proxy in front of vLLM.

Run it with ``mc inference-node`` (or ``python -m inference``); talk to it with any OpenAI client or
:class:`NodeClient`. Everything heavy (FastAPI, uvicorn, boto3, confluent-kafka) is imported by the
modules that need it, so importing this package is cheap.
"""

from inference.api import VERSION_FIELD, VERSION_HEADER, NodeClient, NodeStatus, Routes
from inference.settings import InferenceSettings

__all__ = ["VERSION_FIELD", "VERSION_HEADER", "InferenceSettings", "NodeClient", "NodeStatus", "Routes"]
