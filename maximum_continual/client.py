"""``MaximumContinual``: the entry point. Connection settings, the publisher, models by id.

Where predictions go: to the inference node at ``inference_url`` (``MC_SDK_INFERENCE_URL``, default
``http://127.0.0.1:8100``) with ``model=<model_id>``, so the model_id's live adapter answers. With
``inference_url=None`` (or ``MC_SDK_INFERENCE_URL=""``) the SDK talks straight to vLLM at ``vllm_url``
and always gets the *base* model: fine for trying the agent loop, useless for learning.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from maximum_continual.llm import LLMClient, OpenAIChatClient
from maximum_continual.model import MaximumContinualModel
from maximum_continual.settings import ClientSettings
from producers.publisher import EventPublisher
from schemas.errors import ConfigurationError
from schemas.events import AdapterUpdate

__all__ = ["MaximumContinual"]


class MaximumContinual:
    """The client.

    ``MaximumContinual(auto_deploy=True, inference_url=..., kafka_bootstrap=..., ...)``: keyword
    arguments are :class:`ClientSettings` fields and win over ``MC_*`` variables. ``auto_deploy``
    starts the local stack (and a node) when they do not answer and are configured on this machine.
    ``llm`` replaces the model client with another :class:`~maximum_continual.llm.LLMClient` factory.
    """

    def __init__(
        self,
        auto_deploy: bool = True,
        *,
        settings: ClientSettings | None = None,
        llm: Callable[[], LLMClient] | None = None,
        **overrides: Any,
    ) -> None:
        if settings is not None and overrides:
            settings = settings.model_copy(update=overrides)
        self.settings = _normalised(settings or ClientSettings(**overrides))
        self._llm_factory = llm
        self._publisher: EventPublisher | None = None
        self._lock = threading.Lock()
        if auto_deploy:
            from maximum_continual.deploy import ensure_local_stack

            ensure_local_stack(self.settings)
            if settings is None and self.settings.vllm_api_key is None:
                # `mc stack up` may have just written this install's secrets (vLLM's key, S3's).
                self.settings = _normalised(ClientSettings(**overrides))

    def init_model(self, model_id: str) -> MaximumContinualModel:
        """The model ``model_id`` (created on first use: it starts as the base model, version 0)."""
        try:  # the contract's id rules (the adapter name and S3 prefix are built from it)
            AdapterUpdate(model_id=model_id, version=0, base_model=self.settings.base_model_name)
        except ValueError as exc:
            raise ConfigurationError(f"invalid model_id {model_id!r}: {exc}") from None
        return MaximumContinualModel(self, model_id)

    def served_model(self, model_id: str) -> str:
        """The ``model`` field to send: the model_id to a node, the base model's name to vLLM."""
        return model_id if self.settings.inference_url else self.settings.base_model_name

    def llm(self) -> LLMClient:
        if self._llm_factory is not None:
            return self._llm_factory()
        s = self.settings
        own = s.api_key.get_secret_value() if s.api_key else None
        if s.inference_url:  # the node: MC_SDK_API_KEY is one of its MC_NODE_API_KEYS
            return OpenAIChatClient(s.inference_url, timeout_s=s.request_timeout_s, api_key=own)
        # Straight to vLLM, which wants its own key (MC_VLLM_API_KEY) unless the caller gave one.
        api_key = own or (s.vllm_api_key.get_secret_value() if s.vllm_api_key else None)
        return OpenAIChatClient(s.vllm_url, timeout_s=s.request_timeout_s, api_key=api_key)

    def publisher(self) -> EventPublisher:
        with self._lock:
            if self._publisher is None:
                self._publisher = EventPublisher(self.settings)
            return self._publisher

    def flush(self) -> None:
        """Wait for every event published so far (raises DeliveryError for any that failed)."""
        if self._publisher is not None:
            self._publisher.flush(self.settings.publish_timeout_s)

    def close(self) -> None:
        with self._lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close(self.settings.publish_timeout_s)

    def __enter__(self) -> MaximumContinual:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _normalised(settings: ClientSettings) -> ClientSettings:
    """``MC_SDK_INFERENCE_URL=""`` means no node, like ``None``."""
    if settings.inference_url == "":
        return settings.model_copy(update={"inference_url": None})
    return settings
