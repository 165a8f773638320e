"""Hot-swap under load against the real vLLM: 4 clients, 5 new versions, two nodes (one started late)."""

from __future__ import annotations

import time

import pytest

from inference.adapters import delete_adapters, upload_adapter
from inference.load import LoadGenerator, Target, version_was_live
from producers import EventPublisher
from schemas.storage import s3_client
from schemas.topics import TopicKey
from tests.test_inference_fixtures import peft_adapter_dir, running_node, vllm_models, wait_for_version


@pytest.mark.kafka
@pytest.mark.s3
@pytest.mark.vllm
@pytest.mark.slow
def test_hot_swap_under_load_two_nodes_converge(vllm, s3, topics, model_id, tmp_path):
    settings = topics()
    mid = model_id()
    store = s3_client(settings)
    adapter = peft_adapter_dir()
    updates = [upload_adapter(store, settings, mid, v, adapter, parent_version=v - 1 or None) for v in range(1, 7)]
    try:
        with EventPublisher(settings) as pub:
            pub.publish(TopicKey.ADAPTER_UPDATES, updates[0]).result(30)
            with running_node(settings.topic_prefix, tmp_path, node_id=f"{mid}-a") as node_a:
                wait_for_version(node_a, mid, 1)
                pub.publish(TopicKey.ADAPTER_UPDATES, updates[1]).result(30)
                wait_for_version(node_a, mid, 2)
                # node b starts after two updates: it must catch up from the compacted topic.
                with running_node(settings.topic_prefix, tmp_path, node_id=f"{mid}-b") as node_b:
                    wait_for_version(node_b, mid, 2)
                    nodes = {"a": node_a, "b": node_b}
                    targets = [[Target(n, c.base_url, mid, True) for n, c in nodes.items()] for _ in range(4)]
                    load = LoadGenerator(targets, max_tokens=4)
                    load.phase = "swaps"
                    load.start()
                    try:
                        time.sleep(1.0)
                        for update in updates[2:]:  # 4 more: 5 new versions in all since v1
                            pub.publish(TopicKey.ADAPTER_UPDATES, update).result(30)
                            time.sleep(1.5)
                        for client in nodes.values():
                            wait_for_version(client, mid, 6)
                        time.sleep(1.0)
                    finally:
                        samples = load.stop()
                    histories = {n: c.status().models[mid].history for n, c in nodes.items()}
                    statuses = {n: c.status() for n, c in nodes.items()}

        failed = [s for s in samples if not s.ok]
        assert not failed, failed[:3]
        assert len(samples) >= 8
        stale = [s for s in samples if not version_was_live(s, histories[s.target])]
        assert not stale, (stale[:3], histories)
        seen = {s.version for s in samples}
        assert len(seen) >= 2, seen  # requests were answered by more than one version
        for name, status in statuses.items():
            assert status.models[mid].version == 6, name
            assert [h.version for h in histories[name]][-1] == 6
        assert [h.version for h in histories["a"]] == [1, 2, 3, 4, 5, 6]
    finally:
        delete_adapters(store, settings, mid)
    # Both nodes stopped: nothing of this model may stay loaded (max-loras is small).
    deadline = time.monotonic() + 10
    while [m for m in vllm_models(vllm.vllm_url) if m.startswith(mid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [m for m in vllm_models(vllm.vllm_url) if m.startswith(mid)]
