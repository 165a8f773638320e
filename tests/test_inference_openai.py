"""The official ``openai`` client against a real node in front of the real vLLM: whole completions and
streams, sync and async, with the adapter version in the header and the chunks, token ids and logprobs
in every streamed token, and a caller who leaves making the node let go of its request at once.

Whether vLLM then aborts the generation cannot be read from the shared vLLM reliably (its abort is not
counted in ``vllm:request_success_total``, and other sessions' requests move ``num_requests_running``);
checked by hand on an otherwise idle vLLM: one second after a stream's connection to it was closed 2 tokens
into 900, its ``num_requests_running`` was 0.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import pytest

from inference.adapters import delete_adapters, upload_adapter
from inference.api import ADAPTER_FIELD, VERSION_FIELD, VERSION_HEADER
from producers import EventPublisher
from schemas.storage import s3_client
from schemas.topics import TopicKey
from tests.test_inference_fixtures import peft_adapter_dir, running_node, wait_for_version

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.vllm, pytest.mark.slow]

MESSAGES: Any = [{"role": "user", "content": "Say hi."}]


def _extra(obj: Any) -> dict[str, Any]:
    """The fields the node adds to OpenAI's objects (the client keeps unknown fields as extras)."""
    return dict(obj.model_extra or {})


def _token_ids(entries: Any) -> list[int]:
    return [int(e.token.removeprefix("token_id:")) for e in entries]


def _check_stream(chunks: list[Any], model: str, version: int, *, usage: bool) -> None:
    """What a client that records predictions needs, read from the chunks alone."""
    assert chunks, "no chunk"
    assert all(c.model == model and _extra(c)[VERSION_FIELD] == version for c in chunks)
    assert _extra(chunks[-1])[VERSION_FIELD] == version and _extra(chunks[-1])[ADAPTER_FIELD]
    deltas = [c.choices[0] for c in chunks if c.choices]
    text = "".join(d.delta.content or "" for d in deltas)
    entries = [e for d in deltas if d.logprobs and d.logprobs.content for e in d.logprobs.content]
    assert text and entries
    assert all(e.token.startswith("token_id:") for e in entries)
    assert all(isinstance(e.logprob, float) and e.logprob <= 0 for e in entries)

    # The per-token data adds up to the streamed text: the tokens' bytes are the concatenated deltas (a
    # generation that stopped on the end-of-turn token has that token's entry, whose text is not streamed).
    def joined(part: list[Any]) -> str:
        return bytes(b for e in part for b in (e.bytes or [])).decode()

    assert deltas[-1].finish_reason in ("length", "stop")
    assert joined(entries) == text or (deltas[-1].finish_reason == "stop" and joined(entries[:-1]) == text)
    if usage:
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == len(entries)


def _wait(cond: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


def test_openai_client_sync_async_and_streaming_against_the_node(vllm, s3, topics, model_id, tmp_path):
    settings = topics()
    mid = model_id()
    store = s3_client(settings)
    try:
        with EventPublisher(settings) as pub:
            pub.publish(TopicKey.ADAPTER_UPDATES, upload_adapter(store, settings, mid, 1, peft_adapter_dir())).result(
                30
            )
        with running_node(settings.topic_prefix, tmp_path, node_id=f"{mid}-oa") as node:
            wait_for_version(node, mid, 1)
            before = node.status().counters
            ask: Any = {"model": mid, "messages": MESSAGES, "max_tokens": 8, "temperature": 0}
            client = openai.OpenAI(base_url=f"{node.base_url}/v1", api_key="none", max_retries=0)

            # Sync, whole.
            raw = client.chat.completions.with_raw_response.create(**ask)
            assert raw.headers[VERSION_HEADER] == "1"
            whole = raw.parse()
            assert whole.model == mid and _extra(whole)[VERSION_FIELD] == 1
            assert whole.choices[0].logprobs and _token_ids(whole.choices[0].logprobs.content)

            # Sync, streamed (the version header is there before the first chunk).
            with client.chat.completions.with_streaming_response.create(**ask, stream=True) as resp:
                assert resp.headers[VERSION_HEADER] == "1"
                assert resp.headers["content-type"].startswith("text/event-stream")
                chunks = list(resp.parse())
            _check_stream(chunks, mid, 1, usage=False)

            # Sync, streamed with usage: the last chunk has no choices and still names the version.
            stream = client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
            _check_stream(list(stream), mid, 1, usage=True)

            # Async, whole and streamed; an unknown model id is the base model, version 0.
            async def run_async() -> None:
                aclient = openai.AsyncOpenAI(base_url=f"{node.base_url}/v1", api_key="none", max_retries=0)
                try:
                    araw = await aclient.chat.completions.with_raw_response.create(**ask)
                    assert araw.headers[VERSION_HEADER] == "1"
                    assert _extra(araw.parse())[VERSION_FIELD] == 1
                    base = {**ask, "model": f"{mid}-none"}
                    async with aclient.chat.completions.with_streaming_response.create(**base, stream=True) as r:
                        assert r.headers[VERSION_HEADER] == "0"
                        achunks = [c async for c in await r.parse()]
                    _check_stream(achunks, f"{mid}-none", 0, usage=False)
                    astream = await aclient.chat.completions.create(
                        **ask, stream=True, stream_options={"include_usage": True}
                    )
                    _check_stream([c async for c in astream], mid, 1, usage=True)
                finally:
                    await aclient.close()

            asyncio.run(run_async())

            # Errors before the stream starts keep the JSON error shape (the client raises its own error).
            with pytest.raises(openai.BadRequestError) as refused:
                client.chat.completions.create(**{**ask, "max_tokens": 100_000}, stream=True)
            assert refused.value.status_code == 400 and "max_tokens" in str(refused.value)

            # A caller who leaves: the node lets go of the request (its in-flight hold, and its connection
            # to vLLM, on which vLLM aborts the generation) long before 900 tokens could have been made.
            long: Any = {**ask, "max_tokens": 900, "extra_body": {"ignore_eos": True}}
            stream = client.chat.completions.create(**long, stream=True)
            for _, _chunk in zip(range(2), stream, strict=False):
                assert node.status().models[mid].in_flight == 1
            left = time.monotonic()
            stream.close()
            _wait(lambda: node.status().models[mid].in_flight == 0, timeout_s=5)
            assert time.monotonic() - left < 5
            with pytest.raises(httpx.ReadTimeout):  # a whole completion whose caller gives up after 2 s
                httpx.post(
                    f"{node.base_url}/v1/chat/completions",
                    json={**ask, **long["extra_body"], "max_tokens": 900},
                    timeout=2.0,
                )
            left = time.monotonic()
            _wait(lambda: node.status().models[mid].in_flight == 0, timeout_s=5)
            assert time.monotonic() - left < 5

            counters = node.status().counters
            assert counters["requests"] - before["requests"] == 8
            assert counters["requests_failed"] == before["requests_failed"]
            assert counters["requests_refused_invalid"] - before["requests_refused_invalid"] == 1
            assert node.status().models[mid].in_flight == 0
    finally:
        delete_adapters(store, settings, mid)
