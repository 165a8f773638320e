"""The stream relay alone (no vLLM): chunks stamped, the end of a failed stream, what the client sees.

The real streams against the real vLLM are in ``tests/test_inference_openai.py``; what vLLM cannot be
made to do on demand (fail in the middle of a stream) is played here by an ``httpx.Response`` whose
body breaks off, which is what the node's client sees when vLLM's connection drops.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from inference.api import ADAPTER_FIELD, VERSION_FIELD
from inference.stream import error_event, relay

STAMP = {"model": "m1", VERSION_FIELD: 3, ADAPTER_FIELD: "m1@v3"}


def _chunk(content: str, finish: str | None = None) -> bytes:
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m1@v3",
        "choices": [
            {
                "index": 0,
                "delta": {"content": content},
                "logprobs": {"content": [{"token": "token_id:7", "logprob": -0.5, "bytes": list(content.encode())}]},
                "finish_reason": finish,
            }
        ],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class _Body(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes], fail: Exception | None = None) -> None:
        self.parts, self.fail = parts, fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        if self.fail is not None:
            raise self.fail


def _relay(parts: list[bytes], fail: Exception | None = None) -> tuple[bytes, int]:
    failures = []

    async def go() -> bytes:
        upstream = httpx.Response(200, stream=_Body(parts, fail))
        return b"".join([e async for e in relay(upstream, STAMP, on_failure=lambda: failures.append(1))])

    return asyncio.run(go()), len(failures)


def _events(raw: bytes) -> list[str]:
    return [e.removeprefix("data: ") for e in raw.decode().split("\n\n") if e]


def test_every_chunk_is_stamped_and_the_stream_ends_with_done() -> None:
    raw, failures = _relay([_chunk("Hel"), _chunk("lo", "stop"), b"data: [DONE]\n\n"])
    events = _events(raw)
    assert events[-1] == "[DONE]" and failures == 0
    chunks = [json.loads(e) for e in events[:-1]]
    assert all({k: c[k] for k in STAMP} == STAMP for c in chunks)
    assert [c["choices"][0]["logprobs"]["content"][0]["token"] for c in chunks] == ["token_id:7"] * 2


@pytest.mark.parametrize(
    "fail", [httpx.RemoteProtocolError("peer closed connection"), httpx.ReadTimeout("timed out"), None]
)
def test_a_stream_that_breaks_off_ends_with_one_error_event_and_no_done(fail: Exception | None) -> None:
    raw, failures = _relay([_chunk("Hel")], fail)
    events = _events(raw)
    assert failures == 1 and "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["type"] == "upstream_error" and error["code"] == 502 and error["param"] is None


def test_vllms_own_error_event_is_passed_through_and_counted() -> None:
    vllm_error = b'data: {"error": {"message": "boom", "type": "InternalServerError", "code": 500}}\n\n'
    raw, failures = _relay([_chunk("a"), vllm_error, b"data: [DONE]\n\n"])
    assert failures == 1 and _events(raw)[1] == vllm_error.decode().removeprefix("data: ").strip()


def test_the_openai_client_raises_on_the_error_event() -> None:
    # The bytes the node sends after a failure, read by the official client as it reads the node.
    raw = _chunk("Hel") + error_event("vLLM failed during the stream: ReadTimeout")
    request = httpx.Request("POST", "http://node/v1/chat/completions")
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw, request=request)
    client = openai.OpenAI(base_url="http://node/v1", api_key="none")
    # openai reads the response by duck typing (its own client is built on a fork of httpx)
    stream: Any = openai.Stream(cast_to=ChatCompletionChunk, response=cast(Any, response), client=client)
    got = []
    with pytest.raises(openai.APIError, match="vLLM failed during the stream"):
        for chunk in stream:
            got.append(chunk)
    assert [c.choices[0].delta.content for c in got] == ["Hel"]


def test_a_stream_request_meets_the_same_edge_and_its_early_errors_stay_json() -> None:
    from inference.api import Routes
    from inference.launch import free_port
    from inference.proxy import create_app
    from inference.settings import InferenceSettings

    token = "tok-stream-0123456789"
    settings = InferenceSettings(
        adapter_signing_key="s" * 32,
        vllm_url=f"http://127.0.0.1:{free_port()}",  # nothing listens: vLLM fails before the stream starts
        node_api_keys=token,
    )
    app = create_app(settings)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    async def go(headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.post(Routes.CHAT, json=body, headers=headers)

    refused = asyncio.run(go({}))
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    failed = asyncio.run(go({"authorization": f"Bearer {token}"}))
    assert failed.status_code == 502 and failed.headers["content-type"] == "application/json"
    assert failed.json()["error"]["type"] == "upstream_error"
    counters = app.state.node.metrics.counters
    assert counters["requests_refused_unauthorized"] == 1 and counters["requests_failed"] == 1
