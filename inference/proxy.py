"""The node's HTTP app: the OpenAI-compatible proxy, /v1/models, /status, /metrics, /health.

``model=<model_id>`` is served by that model's live adapter (the base model while there is none).
The node asks vLLM for the sampled tokens' ids and logprobs (``logprobs`` and
``return_tokens_as_token_ids``, unless the caller set them) and names the version that served the
request in the ``x-mc-adapter-version`` header and the ``mc_adapter_version`` body field.
``stream: true`` answers OpenAI's server-sent events, relayed from vLLM with the same version header
and the same fields in every chunk (:mod:`inference.stream`); errors before the first event keep the
JSON error body below. A caller that disconnects cancels its request at vLLM (:mod:`inference.disconnect`).

The HTTP edge: when ``MC_NODE_API_KEYS`` is set, every ``/v1/...`` route wants
``Authorization: Bearer <one of them>`` (401 otherwise); ``/health``, ``/status`` and ``/metrics``
stay open for operators and Prometheus and show no secrets. A chat body over ``MC_NODE_MAX_BODY_BYTES``
is refused (413) before more than that is read; one that is not a chat request, or asks for more than
``MC_NODE_MAX_TOKENS`` tokens or ``MC_NODE_MAX_N`` choices, is refused (400). Every refusal is counted
(``requests_refused_<reason>``) and every error the node makes answers an OpenAI-style body
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from inference.api import ADAPTER_FIELD, VERSION_FIELD, VERSION_HEADER, NodeStatus, Routes
from inference.disconnect import until_disconnect
from inference.metrics import NodeMetrics
from inference.registry import AdapterRegistry, Serving
from inference.settings import InferenceSettings
from inference.stream import EventStreamResponse, relay
from inference.vllm_client import VllmClient
from inference.watcher import AdapterWatcher
from schemas.errors import AdapterError

__all__ = ["Node", "create_app", "route_key"]

_log = logging.getLogger(__name__)


class Node:
    """The node's state: the alias table, the vLLM client, the watcher, the metrics."""

    def __init__(self, settings: InferenceSettings) -> None:
        self.s = settings
        self.metrics = NodeMetrics()
        self.registry = AdapterRegistry(
            settings.base_model_name, history_size=settings.history_size, canary_fraction=settings.canary_fraction
        )
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
        started = time.perf_counter()
        key = route_key(body) if self.registry.canary(model) is not None else None  # no canary: as before
        stream = bool(body.get("stream"))
        async with AsyncExitStack() as held:
            # Held until the answer is complete: for a stream, until its last event (EventStreamResponse).
            serving = held.enter_context(self.registry.hold(model, key))
            if serving.version != self.registry.live_version(model):
                self.metrics.inc("requests_canary")
            resp = await self._send(body, serving, held)
            if resp.status_code == 404 and serving.version > 0:
                # vLLM lost the adapter (another node sharing it unloaded it): load it again, once.
                self.metrics.inc("requests_retried")
                await resp.aclose()
                try:
                    await self.watcher.ensure_loaded(serving)
                except AdapterError as exc:
                    _log.error("reloading %s: %s", serving.served_name, exc)
                resp = await self._send(body, serving, held)
            headers = {VERSION_HEADER: str(serving.version)}
            self.metrics.answered(model, serving.version, time.perf_counter() - started, ok=resp.status_code == 200)
            if resp.status_code != 200:
                self.metrics.inc("requests_failed")
                await resp.aread()  # a stream's error body is a plain JSON error: errors keep their shape
                return _upstream_error(resp, headers)
            if stream:
                stamp = {"model": model, VERSION_FIELD: serving.version, ADAPTER_FIELD: serving.served_name}
                events = relay(resp, stamp, on_failure=lambda: self.metrics.inc("requests_failed"))
                return EventStreamResponse(events, headers=headers, on_close=held.pop_all().aclose)
        data = resp.json()
        data["model"] = model
        data[VERSION_FIELD] = serving.version
        data[ADAPTER_FIELD] = serving.served_name
        return JSONResponse(data, headers=headers)

    async def _send(self, body: dict[str, Any], serving: Serving, held: AsyncExitStack) -> httpx.Response:
        upstream = {**body, "model": serving.served_name}
        upstream.setdefault("logprobs", True)
        upstream.setdefault("return_tokens_as_token_ids", True)
        if not body.get("stream"):
            return await self.vllm.chat(upstream)
        resp = await self.vllm.chat_stream(upstream)
        held.push_async_callback(resp.aclose)  # an unfinished stream's connection is closed: vLLM aborts it
        return resp


def route_key(body: dict[str, Any]) -> bytes:
    """What picks live or canary for a request, the same for every turn of one agent run (so a whole
    trajectory is answered by one version): OpenAI's ``user`` field where the client sets it (the SDK
    sends one id per agent run), else the conversation up to its first user message. The fallback
    cannot tell runs apart whose heads are equal (few-shot examples as user/assistant turns): all of
    them then take the same arm."""
    user = body.get("user")
    if isinstance(user, str) and user:
        return b"user:" + user.encode()
    head: list[Any] = []
    for message in body.get("messages") or []:
        head.append(message)
        if isinstance(message, dict) and message.get("role") == "user":
            break
    return json.dumps(head, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A request the edge turns away before it reaches vLLM; ``reason`` names its counter."""

    status: int
    message: str
    reason: str  # unauthorized, too_large or invalid: counted as requests_refused_<reason>
    param: str | None = None
    kind: str = "invalid_request_error"


def _error(
    status: int, message: str, kind: str, *, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    # OpenAI's error body; `code` is the HTTP status, as vLLM's own errors (passed through) have it.
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status, headers)


def _refuse(metrics: NodeMetrics, refusal: _Refusal) -> JSONResponse:
    metrics.inc(f"requests_refused_{refusal.reason}")
    headers = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
    return _error(refusal.status, refusal.message, refusal.kind, param=refusal.param, headers=headers)


def _upstream_error(resp: httpx.Response, headers: dict[str, str]) -> Response:
    """vLLM's answer when it is not a completion: its own OpenAI-style error, else one of ours."""
    if resp.status_code in (401, 403):
        # vLLM refused the node's key: the caller's credentials are fine, the node's are not.
        return _error(502, "vLLM refused the node's API key (MC_VLLM_API_KEY)", "upstream_error", headers=headers)
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return Response(resp.content, resp.status_code, headers, media_type="application/json")
    return _error(resp.status_code, f"vLLM answered: {resp.text[:300]}", "upstream_error", headers=headers)


#: every route under this prefix wants a token (the OpenAI surface); the ops routes are outside it
_GUARDED_PREFIX = "/v1/"


class _BearerAuth:
    """Pure ASGI middleware: ``/v1/...`` wants ``Authorization: Bearer <token>`` (vLLM's scheme).

    Tokens are kept as sha256 digests and compared with ``hmac.compare_digest`` against every one,
    so the time taken says nothing about how much of a token matched, or which.
    """

    def __init__(self, app: ASGIApp, *, tokens: tuple[str, ...], metrics: NodeMetrics) -> None:
        self.app = app
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]
        self._metrics = metrics

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = hashlib.sha256(token.strip().encode()).digest()
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(given, digest)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope["path"]).removeprefix(scope.get("root_path", ""))
            if path.startswith(_GUARDED_PREFIX) and not self._authorized(Headers(scope=scope)):
                message = "missing or wrong API key: send Authorization: Bearer <key>"
                refusal = _Refusal(401, message, "unauthorized", kind="authentication_error")
                await _refuse(self._metrics, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _read_capped(request: Request, cap: int) -> bytes | None:
    """The body, or None as soon as it is known to be over ``cap`` bytes (the rest is never read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    # Counted while reading too: the client may lie in Content-Length or send it chunked.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _check_chat(raw: bytes, settings: InferenceSettings) -> dict[str, Any] | _Refusal:
    """The chat body as a dict, or why the edge refuses it (what vLLM would reject or should not get)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return _Refusal(400, "the body is not JSON", "invalid")
    if not isinstance(body, dict):
        return _Refusal(400, "the body must be a JSON object", "invalid")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        return _Refusal(400, "stream must be a boolean", "invalid", "stream")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        return _Refusal(400, "stream_options must be an object", "invalid", "stream_options")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return _Refusal(400, "messages must be a non-empty list of message objects", "invalid", "messages")
    if body.get("model") is not None and not isinstance(body["model"], str):
        return _Refusal(400, "model must be a string", "invalid", "model")
    limits = {
        "max_tokens": settings.node_max_tokens,
        "max_completion_tokens": settings.node_max_tokens,
        "n": settings.node_max_n,
    }
    for param, cap in limits.items():
        value = body.get(param)
        # bool is an int to Python, not to JSON: `"n": true` is refused like any non-integer.
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cap):
            return _Refusal(400, f"{param} must be an integer from 1 to {cap} on this node", "invalid", param)
    return body


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    node = Node(settings or InferenceSettings())
    tokens = node.s.node_tokens()
    if tokens:
        _log.info("/v1 routes want one of %d bearer token(s) (MC_NODE_API_KEYS)", len(tokens))
    else:
        _log.warning("MC_NODE_API_KEYS is not set: anyone who can reach this node can use its /v1 routes")

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
    if tokens:
        app.add_middleware(_BearerAuth, tokens=tokens, metrics=node.metrics)

    @app.post(Routes.CHAT)
    async def chat(request: Request) -> Response:
        cap = node.s.node_max_body_bytes
        raw = await _read_capped(request, cap)
        if raw is None:
            return _refuse(node.metrics, _Refusal(413, f"the body is over {cap} bytes", "too_large"))
        body = _check_chat(raw, node.s)
        if isinstance(body, _Refusal):
            return _refuse(node.metrics, body)
        try:
            # A caller that disconnects before the answer (or a stream's first bytes) cancels it at vLLM.
            answer = await until_disconnect(request.receive, node.chat(body))
        except httpx.HTTPError as exc:
            node.metrics.inc("requests_failed")
            return _error(502, f"vLLM did not answer: {exc!r}", "upstream_error")
        # 499 (nginx's "client closed request"): nobody reads it, the access log shows what happened
        return answer if answer is not None else Response(status_code=499)

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
        body = node.metrics.exposition(node.registry.snapshot(), node.watcher.caught_up.is_set())
        return PlainTextResponse(body, media_type=node.metrics.content_type)

    @app.get(Routes.HEALTH)
    async def health() -> Response:
        ok = node.watcher.caught_up.is_set()
        return JSONResponse({"ok": ok, "caught_up": ok}, 200 if ok else 503)

    return app
