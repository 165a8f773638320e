"""The model side of the agent loop: a small pluggable interface and its OpenAI-compatible client.

:class:`LLMClient` is all the loop needs: messages in, one :class:`Completion` out (its text, the
sampled token ids and their logprobs, the adapter version that served it). :class:`OpenAIChatClient`
implements it against the inference node (``model=<model_id>``: the node picks the live adapter and
says which in ``x-mc-adapter-version``) or straight against vLLM (the base model, version 0). Tests
plug in a scripted client.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from schemas.errors import MaximumContinualError
from schemas.events import Message
from schemas.node_api import VERSION_FIELD, VERSION_HEADER, Routes

__all__ = ["VERSION_HEADER", "Completion", "InferenceError", "LLMClient", "OpenAIChatClient"]

_log = logging.getLogger(__name__)

#: a logprob the server reported as -inf becomes this (events carry finite floats only)
_LOGPROB_FLOOR = -1.0e4


class InferenceError(MaximumContinualError):
    """The inference endpoint failed or answered something that is not a chat completion.

    ``status`` is the HTTP status when there was an answer (400: the request itself was refused,
    e.g. the conversation outgrew the model's context).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    finish_reason: str | None = None
    adapter_version: int = 0


class LLMClient(Protocol):
    async def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str],
        session: str | None = None,
    ) -> Completion:
        """One model turn. ``session``: the same for every turn of one agent run (sent as OpenAI's
        ``user`` field, so a node with a canary answers the whole run with one version)."""
        ...

    async def aclose(self) -> None: ...


class OpenAIChatClient:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (the node, or vLLM itself)."""

    def __init__(self, base_url: str, *, timeout_s: float = 300.0, api_key: str | None = None) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, headers=headers)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str],
        session: str | None = None,
    ) -> Completion:
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stop": list(stop),
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "logprobs": True,
            "return_tokens_as_token_ids": True,  # what the trainer needs of each turn
        }
        if session is not None:
            body["user"] = session
        try:
            resp = await self._http.post(Routes.CHAT, json=body)
        except httpx.HTTPError as exc:
            raise InferenceError(f"{self.base_url} did not answer: {exc!r}") from None
        if resp.status_code != 200:
            raise InferenceError(
                f"{self.base_url} answered {resp.status_code}: {resp.text[:500]}", status=resp.status_code
            )
        return parse_completion(resp.json(), resp.headers.get(VERSION_HEADER))

    async def aclose(self) -> None:
        await self._http.aclose()


def parse_completion(data: dict[str, Any], version_header: str | None) -> Completion:
    """A chat completion body -> :class:`Completion` (token ids from ``token_id:N`` tokens)."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        entries = (choice.get("logprobs") or {}).get("content") or []
        token_ids = [int(str(e["token"]).removeprefix("token_id:")) for e in entries]
        logprobs = [_finite(float(e["logprob"])) for e in entries] if entries else None
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise InferenceError(f"not a chat completion with token ids: {exc!r}") from None
    version = int(version_header) if version_header is not None else int(data.get(VERSION_FIELD, 0))
    return Completion(text, token_ids, logprobs, choice.get("finish_reason"), version)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else _LOGPROB_FLOOR
