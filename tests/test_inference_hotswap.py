"""Hot-swap under load against the real vLLM: 4 clients, 5 new versions, two nodes (one started late).

Every version has its own weights, and each answer is checked against the weights of the version the
node names: a node that said "v4" while vLLM answered with v3's adapter would fail here.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from pathlib import Path

import pytest

from devstack import StackSettings
from devstack.cpu import choose_dtype, cpu_flags
from inference.adapters import delete_adapters, upload_adapter, write_synthetic_adapter
from inference.load import LoadGenerator, Target, first_logprob, version_was_live
from producers import EventPublisher
from schemas.storage import s3_client
from schemas.topics import TopicKey
from tests.test_inference_fixtures import running_node, vllm_models, vllm_post, wait_for_version

#: first-token log-probs of one version vary this much with the batch they are computed in (CPU float32)
#: float32 serving repeats a version's first-token log-prob to rounding: a sample names its version when it
#: is within TOLERANCE of that version's fingerprint. bf16 serving (CPUs with AMX, devstack/cpu.py) varies
#: with the batch it is computed in (0.035 and 0.09 seen, against gaps of 0.14 between fingerprints): there a
#: sample names its version when that version's fingerprint is the nearest one.
FLOAT32 = choose_dtype(cpu_flags(), StackSettings().vllm_dtype) == "float32"
TOLERANCE = 0.02
#: fingerprints must be this far apart for the versions to be told apart
MIN_GAP = 4 * TOLERANCE if FLOAT32 else 0.05


def _names_its_version(version: int, logprob: float, fingerprints: dict[int, float]) -> bool:
    if FLOAT32:
        return abs(logprob - fingerprints[version]) <= TOLERANCE
    return min(fingerprints, key=lambda v: abs(logprob - fingerprints[v])) == version


def _distinct_adapters(tmp_path: Path, versions: range) -> dict[int, Path]:
    from devstack.checkpoint import ensure_checkpoint

    checkpoint = ensure_checkpoint(StackSettings().cache_dir)
    return {
        v: write_synthetic_adapter(checkpoint, tmp_path / f"weights-v{v}", seed=1000 + v, scale=0.2) for v in versions
    }


def _fingerprints(vllm, folders: dict[int, Path], load: LoadGenerator) -> dict[int, float]:
    """Each version's first-token log-prob for the load's own request, asked of vLLM directly."""
    out: dict[int, float] = {}
    for version, folder in folders.items():
        name = f"fp-{uuid.uuid4().hex[:8]}@v{version}"
        status, text = vllm_post(f"{vllm.vllm_url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(folder)})
        assert status == 200, text
        try:
            status, text = vllm_post(f"{vllm.vllm_url}/v1/chat/completions", load.body(name, via_node=False))
            assert status == 200, text
            value = first_logprob(json.loads(text))
            assert value is not None
            out[version] = value
        finally:
            vllm_post(f"{vllm.vllm_url}/v1/unload_lora_adapter", {"lora_name": name})
    values = sorted(out.values())
    gaps = [b - a for a, b in itertools.pairwise(values)]
    assert min(gaps) > MIN_GAP, out  # the versions are told apart by their answers
    return out


@pytest.mark.kafka
@pytest.mark.s3
@pytest.mark.vllm
@pytest.mark.slow
def test_hot_swap_under_load_two_nodes_converge(vllm, s3, topics, model_id, tmp_path):
    settings = topics()
    mid = model_id()
    store = s3_client(settings)
    folders = _distinct_adapters(tmp_path, range(1, 7))
    updates = [upload_adapter(store, settings, mid, v, folders[v], parent_version=v - 1 or None) for v in range(1, 7)]
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
                    fingerprints = _fingerprints(vllm, folders, load)
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
        # ... and each by the weights of the version it names
        wrong = [
            (s.version, s.first_logprob)
            for s in samples
            if s.version is None
            or s.first_logprob is None
            or not _names_its_version(s.version, s.first_logprob, fingerprints)
        ]
        assert not wrong, (wrong[:5], fingerprints)
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
