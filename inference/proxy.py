"""The node's HTTP app: the OpenAI-compatible proxy, /v1/models, /status, /metrics, /health.

``model=<model_id>`` is served by that model's live adapter (the base model while there is none).
The node asks vLLM for the sampled tokens' ids and logprobs (``logprobs`` and
``return_tokens_as_token_ids``, unless the caller set them) and names the version that served the
request in the ``x-mc-adapter-version`` header and the ``mc_adapter_version`` body field.
Streaming is not supported (400): the agent loop needs whole completions with their token ids.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from inference.api import ADAPTER_FIELD, VERSION_FIELD, VERSION_HEADER, NodeStatus, Routes
from inference.metrics import NodeMetrics
from inference.registry import AdapterRegistry, Serving
from inference.settings import InferenceSettings
from inference.vllm_client import VllmClient
from inference.watcher import AdapterWatcher
from schemas.errors import AdapterError

__all__ = ["Node", "create_app"]

_log = logging.getLogger(__name__)


class Node:
    """The node's state: the alias table, the vLLM client, the watcher, the metrics."""

    def __init__(self, settings: InferenceSettings) -> None:
        self.s = settings
        self.metrics = NodeMetrics()
        self.registry = AdapterRegistry(settings.base_model_name, history_size=settings.history_size)
        self.vllm = VllmClient(
            settings.vllm_url,
            request_timeout_s=settings.request_timeout_s,
            admin_timeout_s=settings.admin_timeout_s,
            headers=settings.vllm_headers(),
        )
        self.watcher = AdapterWatcher(settings, self.registry, self.vllm, self.metrics)

    def status(self) -> NodeStatus:
        return NodeStatus(
            node_id=self.s.node_id,
            vllm_url=self.s.vllm_url,
            base_model=self.s.base_model_name,
            topic=self.watcher.topic,
            caught_up=self.watcher.caught_up.is_set(),
            models=self.registry.snapshot(),
            last_update=self.watcher.last_update,
            load_ms=self.metrics.load_summary(),
            counters=dict(self.metrics.counters),
        )

    async def chat(self, body: dict[str, Any]) -> Response:
        model = str(body.get("model") or self.s.base_model_name)
        self.metrics.inc("requests")
        with self.registry.hold(model) as serving:
            resp = await self._send(body, serving)
            if resp.status_code == 404 and serving.version > 0:
                # vLLM lost the adapter (another node sharing it unloaded it): load it again, once.
                self.metrics.inc("requests_retried")
                try:
                    await self.watcher.ensure_loaded(serving)
                except AdapterError as exc:
                    _log.error("reloading %s: %s", serving.served_name, exc)
                resp = await self._send(body, serving)
        headers = {VERSION_HEADER: str(serving.version)}
        if resp.status_code != 200:
            self.metrics.inc("requests_failed")
            return Response(resp.content, resp.status_code, headers, media_type="application/json")
        data = resp.json()
        data["model"] = model
        data[VERSION_FIELD] = serving.version
        data[ADAPTER_FIELD] = serving.served_name
        return JSONResponse(data, headers=headers)

    async def _send(self, body: dict[str, Any], serving: Serving) -> httpx.Response:
        upstream = {**body, "model": serving.served_name}
        upstream.setdefault("logprobs", True)
        upstream.setdefault("return_tokens_as_token_ids", True)
        return await self.vllm.chat(upstream)


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    node = Node(settings or InferenceSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await node.watcher.start()
        try:
            yield
        finally:
            await node.watcher.stop()
            await node.vllm.aclose()

    app = FastAPI(title="Maximum Continual inference node", lifespan=lifespan)
    app.state.node = node

    @app.post(Routes.CHAT)
    async def chat(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "the body is not JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object", "invalid_request_error")
        if body.get("stream"):
            return _error(400, "streaming is not supported by the inference node", "invalid_request_error")
        try:
            return await node.chat(body)
        except httpx.HTTPError as exc:
            node.metrics.inc("requests_failed")
            return _error(502, f"vLLM did not answer: {exc!r}", "upstream_error")

    @app.get(Routes.MODELS)
    async def models() -> dict[str, Any]:
        data: list[dict[str, Any]] = [
            {
                "id": node.s.base_model_name,
                "object": "model",
                "owned_by": "vllm",
                VERSION_FIELD: 0,
                ADAPTER_FIELD: node.s.base_model_name,
            },
        ]
        for model_id, live in node.registry.snapshot().items():
            data.append(
                {
                    "id": model_id,
                    "object": "model",
                    "owned_by": "maximum-continual",
                    "created": int(live.live_since),
                    VERSION_FIELD: live.version,
                    ADAPTER_FIELD: live.adapter,
                }
            )
        return {"object": "list", "data": data}

    @app.get(Routes.STATUS)
    async def status() -> NodeStatus:
        return node.status()

    @app.get(Routes.METRICS)
    async def metrics() -> PlainTextResponse:
        text = node.metrics.prometheus(node.registry.snapshot(), node.watcher.caught_up.is_set())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get(Routes.HEALTH)
    async def health() -> Response:
        ok = node.watcher.caught_up.is_set()
        return JSONResponse({"ok": ok, "caught_up": ok}, 200 if ok else 503)

    return app
