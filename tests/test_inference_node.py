"""The inference node against the real Kafka, S3 and vLLM: load, serve, refuse a bad hash, roll back."""

from __future__ import annotations

import time

import pytest

from inference.adapters import delete_adapters, upload_adapter
from inference.api import VERSION_FIELD, VERSION_HEADER
from producers import EventPublisher
from schemas.events import AdapterUpdate
from schemas.signing import sign_update
from schemas.storage import s3_client
from tests.metrics_text import labels, samples
from tests.test_inference_fixtures import peft_adapter_dir, running_node, vllm_models, wait_for_version

CHAT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 6, "temperature": 0}


@pytest.mark.kafka
@pytest.mark.s3
@pytest.mark.vllm
@pytest.mark.slow
def test_node_serves_live_version_refuses_bad_hash_and_unloads(vllm, s3, topics, model_id, tmp_path):
    settings = topics()
    mid = model_id()
    store = s3_client(settings)
    adapter = peft_adapter_dir()
    try:
        with EventPublisher(settings) as pub:
            pub.publish(_key(), upload_adapter(store, settings, mid, 1, adapter)).result(30)
            with running_node(settings.topic_prefix, tmp_path, node_id=f"{mid}-a") as node:
                wait_for_version(node, mid, 1)
                assert f"{mid}@v1" in vllm_models(vllm.vllm_url)

                resp = node.chat({**CHAT, "model": mid})
                assert resp.status_code == 200, resp.text
                body = resp.json()
                assert resp.headers[VERSION_HEADER] == "1"
                assert body[VERSION_FIELD] == 1 and body["model"] == mid
                tokens = body["choices"][0]["logprobs"]["content"]
                assert tokens and all(t["token"].startswith("token_id:") for t in tokens)

                # An unknown model_id is served by the base model, version 0.
                other = node.chat({**CHAT, "model": f"{mid}-none"})
                assert other.status_code == 200 and other.headers[VERSION_HEADER] == "0"

                # A wrong sha256 is refused and counted; v1 keeps serving.
                pub.publish(_key(), upload_adapter(store, settings, mid, 2, adapter, corrupt=True)).result(30)
                _wait(lambda: node.status().counters["verify_failures"] == 1)
                status = node.status()
                assert status.models[mid].version == 1
                assert status.last_update is not None and status.last_update.outcome.startswith("failed")
                assert node.chat({**CHAT, "model": mid}).headers[VERSION_HEADER] == "1"

                # A good v3, then a rollback to the base model (version 0).
                pub.publish(_key(), upload_adapter(store, settings, mid, 3, adapter, parent_version=1)).result(30)
                wait_for_version(node, mid, 3)
                _wait(lambda: f"{mid}@v1" not in vllm_models(vllm.vllm_url))  # old name unloaded after drain
                base = AdapterUpdate(model_id=mid, version=0, base_model=settings.base_model_name, rollback=True)
                pub.publish(_key(), sign_update(base, settings.signing_key())).result(30)
                wait_for_version(node, mid, 0)
                assert node.chat({**CHAT, "model": mid}).headers[VERSION_HEADER] == "0"
                _wait(lambda: f"{mid}@v3" not in vllm_models(vllm.vllm_url))

                models = {m["id"]: m for m in node.models()}
                assert models[mid][VERSION_FIELD] == 0 and settings.base_model_name in models
                metrics = samples(node.metrics())
                assert metrics[("mc_inference_verify_failures_total", ())] == 1
                assert metrics[("mc_inference_adapter_version", labels(model_id=mid))] == 0
                assert metrics[("mc_inference_adapter_load_seconds_count", ())] == 2
                history = node.status().models[mid].history
                assert [h.version for h in history] == [1, 3, 0]
                assert node.status().load_ms["count"] == 2
    finally:
        delete_adapters(store, settings, mid)
    assert not [m for m in vllm_models(vllm.vllm_url) if m.startswith(mid)]


def _key():
    from schemas.topics import TopicKey

    return TopicKey.ADAPTER_UPDATES


def _wait(cond, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.1)
