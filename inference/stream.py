"""Streamed chat completions: vLLM's server-sent events relayed to the caller, stamped by the node.

vLLM streams OpenAI's format: one ``data: {chat.completion.chunk}`` event per step, ``data: [DONE]`` at
the end. The node passes every event through and adds to each chunk what it adds to a whole completion:
``model`` is the caller's model id (not vLLM's versioned adapter name), :data:`VERSION_FIELD` and
:data:`ADAPTER_FIELD` name the version that served it. Every chunk rather than only the last: a client
that stops reading early still knows the version, and the last chunk (the one with ``finish_reason``,
or the ``usage`` chunk when the caller asked for ``stream_options.include_usage``) carries it too. The
per-token ``logprobs`` (``token_id:N`` tokens, asked for by the node as for whole completions) stay in
the chunks as vLLM wrote them, so concatenating the chunks' ``logprobs.content`` gives the token ids
and logprobs a whole completion has.

A failure after the stream started cannot change the status (200 is sent): the stream then ends with
one error event in OpenAI's error shape, ``data: {"error": {"message", "type", "param", "code"}}``, and
no ``[DONE]``; the official ``openai`` client raises ``APIError`` on it. vLLM's own error events are
passed through as they are (vLLM follows them with ``[DONE]``). Both count as a failed request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["SSE_MEDIA_TYPE", "EventStreamResponse", "error_event", "relay"]

SSE_MEDIA_TYPE = "text/event-stream"

_DONE = "[DONE]"


def _event(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


def error_event(message: str, *, code: int = 502, kind: str = "upstream_error") -> bytes:
    """The event that ends a stream which failed after it started (OpenAI's error body)."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return _event(json.dumps(body, separators=(",", ":")))


async def relay(
    upstream: httpx.Response, stamp: Mapping[str, Any], on_failure: Callable[[], None]
) -> AsyncIterator[bytes]:
    """vLLM's events with ``stamp`` merged into each chunk; ends with an error event if vLLM fails."""
    finished = False
    try:
        async for line in upstream.aiter_lines():
            if not line:
                continue  # the blank line between events: each event below is written with its own
            if not line.startswith("data:"):
                yield f"{line}\n".encode()  # a comment or an `event:` field, kept as it was
                continue
            payload = line[5:].strip()
            if payload == _DONE:
                finished = True
                yield _event(_DONE)
                continue
            try:
                chunk = json.loads(payload)
            except ValueError:
                chunk = None
            if isinstance(chunk, dict) and "error" in chunk:
                on_failure()  # vLLM's own mid-stream error: passed through, its [DONE] follows
                yield _event(payload)
            elif isinstance(chunk, dict):
                chunk.update(stamp)
                yield _event(json.dumps(chunk, separators=(",", ":")))
            else:
                yield _event(payload)
    except httpx.HTTPError as exc:
        on_failure()
        yield error_event(f"vLLM failed during the stream: {exc!r}")
        return
    if not finished:
        on_failure()
        yield error_event("vLLM ended the stream before [DONE]")


class EventStreamResponse(StreamingResponse):
    """A server-sent-events response that runs ``on_close`` however it ends.

    Starlette cancels the body when the client disconnects; the generator may then be left suspended,
    so its own ``finally`` is not a reliable place to let go of the upstream response (and with it
    vLLM's request, which vLLM aborts when the connection closes) or of the node's in-flight hold.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        headers: Mapping[str, str],
        on_close: Callable[[], Awaitable[object]],
    ) -> None:
        # no-cache: proxies must not keep it; X-Accel-Buffering: nginx must not buffer the events
        headers = {**headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
        super().__init__(content, media_type=SSE_MEDIA_TYPE, headers=headers)
        self._content = content
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                aclose = getattr(self._content, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                await self._on_close()
