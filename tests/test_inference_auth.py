"""The inference node's HTTP edge: bearer tokens on /v1, body/token/choice caps, OpenAI-style errors.

The refusals never reach vLLM, so most tests drive the app in-process through httpx's ASGI transport,
which runs no lifespan (no adapter watcher, no Kafka) and hands the app the request body one chunk at
a time, as a socket would: a test can count how much of a body the node read before it refused it.
The last test runs a real node against the real stack.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from inference.api import Routes
from inference.launch import free_port
from inference.proxy import create_app
from inference.settings import InferenceSettings
from maximum_continual import MaximumContinual
from maximum_continual.llm import Completion, InferenceError, OpenAIChatClient
from schemas.events import Message
from tests.metrics_text import labels, samples
from tests.test_inference_fixtures import running_node

TOKENS = ("tok-a-0123456789", "tok-b-9876543210")
CAP_BYTES = 4096
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}


def _settings(**overrides: Any) -> InferenceSettings:
    values: dict[str, Any] = {
        "adapter_signing_key": "s" * 32,
        "vllm_url": f"http://127.0.0.1:{free_port()}",  # nothing listens: a request that gets through is a 502
        "node_api_keys": ", ".join(TOKENS),
        "node_max_body_bytes": CAP_BYTES,
        "node_max_tokens": 64,
        "node_max_n": 2,
    }
    return InferenceSettings(**{**values, **overrides})


def _call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _counters(app: Any) -> dict[str, int]:
    return dict(app.state.node.metrics.counters)


def _assert_openai_error(resp: httpx.Response, status: int, kind: str, param: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["type"] == kind and error["code"] == status and error["param"] == param
    assert isinstance(error["message"], str) and error["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, _bearer("wrong"), _bearer(TOKENS[0][:-1]), {"authorization": f"Basic {TOKENS[0]}"}, _bearer("")],
    ids=["none", "wrong", "prefix", "basic", "empty"],
)
def test_v1_routes_refuse_a_missing_or_wrong_token(headers):
    app = create_app(_settings())
    models = _call(app, "GET", Routes.MODELS, headers=headers)
    chat = _call(app, "POST", Routes.CHAT, json=CHAT, headers=headers)
    for resp in (models, chat):
        _assert_openai_error(resp, 401, "authentication_error")
        assert resp.headers["www-authenticate"] == "Bearer"
    assert _counters(app)["requests_refused_unauthorized"] == 2
    assert _counters(app)["requests"] == 0  # nothing reached the proxy


def test_ops_routes_stay_open_and_show_no_secrets():
    settings = _settings(vllm_api_key="vllm-key-0123456789")
    app = create_app(settings)
    _call(app, "GET", Routes.MODELS)  # one refusal, to see it counted
    status = _call(app, "GET", Routes.STATUS)
    metrics = _call(app, "GET", Routes.METRICS)
    health = _call(app, "GET", Routes.HEALTH)
    assert status.status_code == 200 and metrics.status_code == 200
    assert health.status_code == 503  # open, and not caught up: no watcher runs here
    assert status.json()["counters"]["requests_refused_unauthorized"] == 1
    refused = samples(metrics.text)
    assert refused[("mc_inference_requests_refused_total", labels(reason="unauthorized"))] == 1
    assert refused[("mc_inference_requests_refused_total", labels(reason="too_large"))] == 0
    secrets = [*TOKENS, "vllm-key-0123456789", "s" * 32]
    for text in (status.text, metrics.text, str(settings), repr(settings)):
        assert not [s for s in secrets if s in text]


def test_a_right_token_gets_through():
    app = create_app(_settings())
    models = _call(app, "GET", Routes.MODELS, headers=_bearer(TOKENS[1]))
    assert models.status_code == 200 and models.json()["object"] == "list"
    # Through the edge to vLLM, which is not there: the node's 502, OpenAI-style too.
    chat = _call(app, "POST", Routes.CHAT, json=CHAT, headers=_bearer(TOKENS[0]))
    _assert_openai_error(chat, 502, "upstream_error")
    counters = _counters(app)
    assert counters["requests"] == 1 and counters["requests_failed"] == 1
    assert not [n for n, v in counters.items() if n.startswith("requests_refused_") and v]


@pytest.mark.parametrize("keys", [None, "", " , "])
def test_without_keys_the_node_is_open_and_says_so_once(keys, caplog):
    with caplog.at_level(logging.WARNING, logger="inference.proxy"):
        app = create_app(_settings(node_api_keys=keys))
    (warning,) = [r for r in caplog.records if r.name == "inference.proxy"]
    assert warning.levelno == logging.WARNING and "MC_NODE_API_KEYS" in warning.message
    assert _call(app, "GET", Routes.MODELS).status_code == 200


def test_keys_are_split_trimmed_and_masked():
    settings = _settings(node_api_keys=f" {TOKENS[0]} ,, {TOKENS[1]},")
    assert settings.node_tokens() == TOKENS
    assert TOKENS[0] not in str(settings.node_api_keys) and TOKENS[0] not in settings.model_dump_json()


class _Body:
    """A request body of ``chunks`` chunks of 1 KiB that counts how many the server pulled."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"x" * 1024


def test_a_body_declared_over_the_cap_is_refused_unread():
    app = create_app(_settings())
    body = _Body(64)
    headers = {**_bearer(TOKENS[0]), "content-length": str(64 * 1024)}
    resp = _call(app, "POST", Routes.CHAT, content=body, headers=headers)
    _assert_openai_error(resp, 413, "invalid_request_error")
    assert body.pulled == 0
    assert _counters(app)["requests_refused_too_large"] == 1


@pytest.mark.parametrize("declared", [None, "100"], ids=["chunked", "lying-content-length"])
def test_a_body_over_the_cap_is_refused_while_read(declared):
    app = create_app(_settings())
    body = _Body(1000)  # 1 MB, against a cap of 4 KiB
    headers = _bearer(TOKENS[0]) | ({"content-length": declared} if declared else {})
    resp = _call(app, "POST", Routes.CHAT, content=body, headers=headers)
    _assert_openai_error(resp, 413, "invalid_request_error")
    assert body.pulled <= CAP_BYTES // 1024 + 1  # stopped at the first chunk over the cap
    assert _counters(app)["requests_refused_too_large"] == 1


def test_a_body_at_the_cap_is_read():
    app = create_app(_settings())
    raw = json.dumps(CHAT).encode()
    padded = raw[:-1] + b" " * (CAP_BYTES - len(raw)) + b"}"
    resp = _call(app, "POST", Routes.CHAT, content=padded, headers=_bearer(TOKENS[0]))
    assert resp.status_code == 502  # past every check, to the absent vLLM
    assert _counters(app)["requests_refused_too_large"] == 0


def _chat(**changes: Any) -> bytes:
    return json.dumps({**CHAT, **changes}).encode()


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        pytest.param(b"{not json", None, id="not-json"),
        pytest.param(b"[1, 2]", None, id="array"),
        pytest.param(b'"text"', None, id="string"),
        pytest.param(json.dumps({"model": "m"}).encode(), "messages", id="no-messages"),
        pytest.param(_chat(messages="hi"), "messages", id="messages-string"),
        pytest.param(_chat(messages=[]), "messages", id="messages-empty"),
        pytest.param(_chat(messages=["hi"]), "messages", id="message-not-object"),
        pytest.param(_chat(model=5), "model", id="model-number"),
        pytest.param(_chat(max_tokens=65), "max_tokens", id="max-tokens-over"),
        pytest.param(_chat(max_tokens="8"), "max_tokens", id="max-tokens-string"),
        pytest.param(_chat(max_tokens=0), "max_tokens", id="max-tokens-zero"),
        pytest.param(_chat(max_completion_tokens=10_000), "max_completion_tokens", id="max-completion-over"),
        pytest.param(_chat(n=3), "n", id="n-over"),
        pytest.param(_chat(n=True), "n", id="n-bool"),
        pytest.param(_chat(stream="yes"), "stream", id="stream-not-bool"),
        pytest.param(_chat(stream=True, stream_options=[1]), "stream_options", id="stream-options-not-object"),
        pytest.param(_chat(stream=True, max_tokens=65), "max_tokens", id="stream-max-tokens-over"),
    ],
)
def test_bodies_that_are_not_an_allowed_chat_request_are_refused(raw, param):
    app = create_app(_settings())
    resp = _call(app, "POST", Routes.CHAT, content=raw, headers=_bearer(TOKENS[0]))
    _assert_openai_error(resp, 400, "invalid_request_error", param)
    if param:
        assert param in resp.json()["error"]["message"]
    assert _counters(app)["requests_refused_invalid"] == 1 and _counters(app)["requests"] == 0


@pytest.mark.parametrize(
    ("inference_url", "api_key", "sent"),
    [
        ("http://node:8100", "node-key", "node-key"),
        ("http://node:8100", None, None),  # never vLLM's key to a node
        (None, None, "vllm-key"),
        (None, "node-key", "node-key"),
    ],
)
def test_sdk_sends_the_key_its_endpoint_wants(inference_url, api_key, sent):
    client = MaximumContinual(auto_deploy=False, inference_url=inference_url, api_key=api_key, vllm_api_key="vllm-key")
    llm = client.llm()
    assert isinstance(llm, OpenAIChatClient)
    expected = f"Bearer {sent}" if sent else None
    assert llm._http.headers.get("authorization") == expected
    asyncio.run(llm.aclose())


async def _ask(llm: OpenAIChatClient, model: str) -> Completion:
    try:
        return await llm.complete(
            [Message(role="user", content="Say hi.")], model=model, max_tokens=6, temperature=0, stop=[]
        )
    finally:
        await llm.aclose()


@pytest.mark.kafka
@pytest.mark.vllm
@pytest.mark.slow
def test_a_node_with_keys_serves_the_sdk_with_its_key_and_refuses_it_without(
    vllm, topics, model_id, tmp_path, monkeypatch
):
    settings = topics()
    mid = model_id()
    token = f"key-{mid}"
    monkeypatch.setenv("MC_NODE_API_KEYS", f"other-key, {token}")
    with running_node(settings.topic_prefix, tmp_path, node_id=f"auth-{mid}") as node:
        completion = asyncio.run(_ask(OpenAIChatClient(node.base_url, api_key=token), mid))
        assert completion.token_ids and completion.adapter_version == 0  # no adapter: the base model
        with pytest.raises(InferenceError) as refused:
            asyncio.run(_ask(OpenAIChatClient(node.base_url), mid))
        assert refused.value.status == 401
        assert node.status().counters["requests_refused_unauthorized"] == 1  # /status needs no token

    # Direct mode: no node; the SDK sends vLLM's own key (this install's, from its secrets file).
    monkeypatch.delenv("MC_NODE_API_KEYS")
    with MaximumContinual(auto_deploy=False, inference_url=None) as client:
        llm = client.llm()
        assert isinstance(llm, OpenAIChatClient)
        direct = asyncio.run(_ask(llm, client.served_model(mid)))
    assert direct.token_ids


@pytest.mark.parametrize(
    ("status", "content", "want_status", "passed_through"),
    [
        pytest.param(401, b'{"error": "Unauthorized"}', 502, False, id="vllm-refuses-the-node-key"),
        pytest.param(500, b"Internal Server Error", 500, False, id="not-openai-style"),
        pytest.param(400, b'{"error": {"message": "too long", "type": "BadRequestError", "code": 400}}', 400, True),
    ],
)
def test_upstream_errors_reach_the_caller_openai_style(status, content, want_status, passed_through):
    from inference.proxy import _upstream_error

    resp = _upstream_error(httpx.Response(status, content=content), {"x-mc-adapter-version": "0"})
    assert resp.status_code == want_status and resp.headers["x-mc-adapter-version"] == "0"
    error = json.loads(bytes(resp.body))["error"]
    assert isinstance(error, dict) and error["message"]
    assert (bytes(resp.body) == content) is passed_through
