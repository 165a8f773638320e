"""The node's HTTP interface, defined once: route paths, the body of ``/status``, and the client.

The proxy mounts these paths and returns these models; :class:`NodeClient` calls the same paths and
parses the same models, so server and client cannot drift apart. The chat route is the OpenAI one;
the node adds :data:`VERSION_HEADER` and the body fields :data:`VERSION_FIELD` / :data:`ADAPTER_FIELD`.
Those names and the route paths live in the contract (:mod:`schemas.node_api`), where the SDK reads
them too; they are re-exported here for the node's own modules.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, Field

from schemas.events import GateDecision
from schemas.node_api import ADAPTER_FIELD, VERSION_FIELD, VERSION_HEADER, Routes

__all__ = [
    "ADAPTER_FIELD",
    "VERSION_FIELD",
    "VERSION_HEADER",
    "CanaryAdapter",
    "LiveAdapter",
    "NodeClient",
    "NodeStatus",
    "Routes",
    "SwitchRecord",
    "UpdateSeen",
]


class SwitchRecord(BaseModel):
    """One period during which a version served a model_id (unix seconds)."""

    version: int
    adapter: str
    live_from: float
    live_until: float | None = None


class CanaryAdapter(BaseModel):
    """The version the gate is trying on a share of the model's requests (issue #14)."""

    version: int
    adapter: str
    since: float
    fraction: float = Field(description="share of the model's requests it answers")
    requests: int = 0


class LiveAdapter(BaseModel):
    model_id: str
    version: int = Field(description="0 = the base model")
    adapter: str = Field(description="the name vLLM serves it under")
    live_since: float
    in_flight: int = 0
    load_ms: float | None = None
    history: list[SwitchRecord] = Field(default_factory=list)
    canary: CanaryAdapter | None = None
    #: the last verdict about a canary of this model (the gate's, or a person's), as announced
    decision: GateDecision | None = None
    #: versions whose canary ended without promotion: this node never serves them again
    refused: list[int] = Field(default_factory=list)


class UpdateSeen(BaseModel):
    model_id: str
    version: int
    rollback: bool
    offset: int
    seen_at: float
    outcome: str = Field(description="pending, live, skipped, canary, proposal, or failed: <reason>")
    stage: str = "live"


class NodeStatus(BaseModel):
    node_id: str
    vllm_url: str
    base_model: str
    topic: str
    caught_up: bool = Field(description="the node has read adapter-updates up to its end at start-up")
    models: dict[str, LiveAdapter]
    last_update: UpdateSeen | None
    load_ms: dict[str, float] = Field(description="count, last, p50, max of adapter load latencies")
    counters: dict[str, int]


class NodeClient:
    """A small synchronous client of one node (tests, the bench, operators)."""

    def __init__(self, base_url: str, *, timeout_s: float = 600.0, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # api_key: one of the node's MC_NODE_API_KEYS, for /v1 (chat, models); the ops routes are open
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)

    def health(self) -> bool:
        try:
            return self._http.get(Routes.HEALTH, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self) -> NodeStatus:
        resp = self._http.get(Routes.STATUS)
        resp.raise_for_status()
        return NodeStatus.model_validate_json(resp.content)

    def models(self) -> list[dict[str, Any]]:
        resp = self._http.get(Routes.MODELS)
        resp.raise_for_status()
        data: list[dict[str, Any]] = resp.json()["data"]
        return data

    def metrics(self) -> str:
        resp = self._http.get(Routes.METRICS)
        resp.raise_for_status()
        return resp.text

    def chat(self, body: dict[str, Any]) -> httpx.Response:
        """POST the OpenAI chat body; the caller reads status, headers and JSON."""
        return self._http.post(Routes.CHAT, json=body)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
