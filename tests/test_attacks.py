"""Attacks on the running system's trust boundaries (real Kafka, S3 and vLLM).

Each attack is refused with a typed error or a counted refusal, and nothing of the running system
changes: the live adapter keeps serving. The README's attack table points here; the node's HTTP edge
is attacked in tests/test_inference_auth.py and the agent sandbox in tests/test_sdk_sandbox.py.
"""

from __future__ import annotations

import time

import httpx
import pytest

from inference.adapters import delete_adapters, upload_adapter
from inference.api import VERSION_HEADER
from producers import EventPublisher
from schemas.events import AdapterUpdate
from schemas.signing import sign_update
from schemas.storage import adapter_uri, s3_client
from schemas.topics import TopicKey
from tests.metrics_text import samples
from tests.test_inference_fixtures import peft_adapter_dir, running_node, vllm_models, wait_for_version

CHAT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}


def _wait(cond, timeout_s: float = 30.0, on_timeout=lambda: None) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in time: {on_timeout()}")
        time.sleep(0.1)


@pytest.mark.kafka
@pytest.mark.s3
@pytest.mark.vllm
@pytest.mark.slow
def test_forged_adapter_updates_are_refused_and_the_live_version_keeps_serving(vllm, s3, topics, model_id, tmp_path):
    settings = topics()
    mid, victim = model_id(), model_id()
    store = s3_client(settings)
    adapter = peft_adapter_dir()
    key = settings.signing_key()
    try:
        with EventPublisher(settings) as pub:
            pub.publish(TopicKey.ADAPTER_UPDATES, upload_adapter(store, settings, mid, 1, adapter)).result(30)
            upload_adapter(store, settings, victim, 1, adapter)  # stored, never announced
            with running_node(settings.topic_prefix, tmp_path, node_id=f"{mid}-a") as node:
                wait_for_version(node, mid, 1)
                good = upload_adapter(store, settings, mid, 2, adapter, parent_version=1)
                base = AdapterUpdate(model_id=mid, version=0, base_model=settings.base_model_name, rollback=True)
                forgeries = [
                    # whoever can write to the topic, without the key: a new version, a rollback
                    good.model_copy(update={"signature": None}),
                    base,
                    sign_update(good, b"not-the-key" * 4),
                    # a real signature, then a field changed (other weights)
                    sign_update(good, key).model_copy(
                        update={"files": {**good.files, "adapter_model.safetensors": "b" * 64}}
                    ),
                    # signed (say, with a leaked key) but pointing at another model's files
                    sign_update(good.model_copy(update={"uri": adapter_uri(settings.s3_bucket, victim, 1)}), key),
                ]
                for forged in forgeries:
                    pub.publish(TopicKey.ADAPTER_UPDATES, forged).result(30)
                _wait(
                    lambda: node.status().counters.get("updates_refused", 0) == len(forgeries), on_timeout=node.status
                )
                counters = node.status().counters
                assert counters["updates_refused_unsigned"] == 2
                assert counters["updates_refused_bad_signature"] == 2
                assert counters["updates_refused_foreign_uri"] == 1
                assert node.status().models[mid].version == 1  # nothing changed
                assert node.chat({**CHAT, "model": mid}).headers[VERSION_HEADER] == "1"
                assert not [m for m in vllm_models(vllm.vllm_url) if m.startswith(victim)]
                refused = samples(node.metrics())
                assert sum(v for (name, _), v in refused.items() if name == "mc_inference_updates_refused_total") == 5
                # and the real thing still goes through
                pub.publish(TopicKey.ADAPTER_UPDATES, good).result(30)
                wait_for_version(node, mid, 2)
    finally:
        delete_adapters(store, settings, mid)
        delete_adapters(store, settings, victim)


@pytest.mark.vllm
def test_vllm_refuses_callers_without_its_api_key(vllm) -> None:
    """Runtime LoRA loading is an admin endpoint: without the key nobody loads or unloads adapters."""
    url = vllm.vllm_url
    load = {"lora_name": "evil@v1", "lora_path": "/tmp"}
    assert httpx.post(f"{url}/v1/load_lora_adapter", json=load, timeout=10).status_code == 401
    assert httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "x"}, timeout=10).status_code == 401
    bad = {"Authorization": "Bearer not-the-key"}
    chat = {"model": vllm.base_model_name, **CHAT}
    assert httpx.post(f"{url}/v1/chat/completions", json=chat, headers=bad, timeout=10).status_code == 401
    ok = httpx.post(f"{url}/v1/chat/completions", json=chat, headers=vllm.vllm_headers(), timeout=120)
    assert ok.status_code == 200, ok.text


@pytest.mark.s3
def test_s3_refuses_the_old_constant_credentials(s3) -> None:
    """Credentials are generated per install: the pair that used to be in the code opens nothing."""
    from botocore.exceptions import ClientError
    from pydantic import SecretStr

    old = s3.model_copy(update={"s3_access_key": "mcadmin", "s3_secret_key": SecretStr("mcadmin-secret-key")})
    with pytest.raises(ClientError) as err:
        s3_client(old).list_buckets()
    assert err.value.response["Error"]["Code"] in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")
    assert s3.s3_access_key != "mcadmin"
    s3_client(s3).head_bucket(Bucket=s3.s3_bucket)
