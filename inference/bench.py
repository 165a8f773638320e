"""``mc bench swap``: adapter hot-swaps under load through one inference node, against the real stack.

1. fresh topics (a ``bench-*`` prefix) and model_id; ``swaps + 1`` synthetic LoRA versions in S3;
2. a node started as its own process; v1 announced and live;
3. steady phase: ``clients`` threads, each alternating node / straight to vLLM (same adapter, same
   request), for ``steady_s`` seconds: the p99 through the node and the proxy overhead;
4. swap phase: the same clients through the node only while ``swaps`` new versions are announced,
   ``swap_interval_s`` apart, until the node serves the last one.

Prints (last line) requests, failed, swaps, load_ms_p50, p99_ms_steady, p99_ms_during_swaps and
proxy_overhead_ratio = median latency through the node / median latency straight to vLLM, both
from the steady phase of the same run. Responses naming a version that was not live at the node
during the request count as failed.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from inference.adapters import delete_adapters, upload_adapter, write_synthetic_adapter
from inference.launch import node_process
from inference.load import LoadGenerator, Target, percentile, version_was_live
from inference.registry import adapter_name
from inference.settings import InferenceSettings
from schemas.kafka_config import kafka_config
from schemas.storage import s3_client
from schemas.topics import TopicKey, topic_name

__all__ = ["run"]


def _checkpoint_dir(settings: InferenceSettings) -> Path:
    """vLLM's /v1/models names the folder it serves the base model from (``root``)."""
    data = httpx.get(f"{settings.vllm_url}/v1/models", headers=settings.vllm_headers(), timeout=10).json()["data"]
    root = next(m["root"] for m in data if m["id"] == settings.base_model_name)
    return Path(root)


def _wait_version(node: Any, model_id: str, version: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (live := node.status().models.get(model_id)) is None or live.version != version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the node did not switch {model_id} to v{version} in {timeout_s} s")
        time.sleep(0.05)


def run(
    *, clients: int = 4, swaps: int = 5, steady_s: float = 30.0, swap_interval_s: float = 3.0, max_tokens: int = 16
) -> dict[str, Any]:
    from producers import EventPublisher, ProducerSettings, ensure_topics

    settings = ProducerSettings(topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    node_settings = InferenceSettings(topic_prefix=settings.topic_prefix)
    model_id = f"bench-swap-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings)
    s3 = s3_client(settings)
    work = Path(tempfile.mkdtemp(prefix="mc-bench-swap-"))
    steps = tqdm(total=4 + swaps, desc="bench swap", unit="step")
    try:
        checkpoint = _checkpoint_dir(node_settings)
        updates = []
        for version in range(1, swaps + 2):
            folder = write_synthetic_adapter(checkpoint, work / f"v{version}", seed=version)
            updates.append(upload_adapter(s3, settings, model_id, version, folder, parent_version=version - 1 or None))
        steps.update(1)
        env = {
            "MC_TOPIC_PREFIX": settings.topic_prefix,
            "MC_NODE_ADAPTER_CACHE_DIR": str(work / "cache"),
            "MC_NODE_ID": f"bench-{model_id}",
        }
        with EventPublisher(settings) as pub, node_process(env, log_path=work / "node.log") as node:
            pub.publish(TopicKey.ADAPTER_UPDATES, updates[0]).result(30)
            _wait_version(node, model_id, 1)
            steps.update(1)
            via_node = Target("node", node.base_url, model_id, True)
            direct = Target(
                "direct", node_settings.vllm_url, adapter_name(model_id, 1), False, node_settings.vllm_headers()
            )
            load = LoadGenerator(
                [[via_node, direct] if i % 2 == 0 else [direct, via_node] for i in range(clients)],
                max_tokens=max_tokens,
            )
            load.start()
            time.sleep(min(3.0, steady_s / 5))  # warm-up: connections, prefix cache
            load.phase = "steady"
            time.sleep(steady_s)
            steps.update(1)
            load.phase = "drain"  # requests still running to vLLM directly on v1 must end before v1 goes
            load.stop()
            swap_load = LoadGenerator([[via_node]] * clients, max_tokens=max_tokens)
            swap_load.phase = "swaps"
            swap_load.start()
            time.sleep(swap_interval_s)
            before = node.status().counters["swaps"]
            for update in updates[1:]:
                pub.publish(TopicKey.ADAPTER_UPDATES, update).result(30)
                time.sleep(swap_interval_s)
                steps.update(1)
            _wait_version(node, model_id, swaps + 1)
            samples = load.samples + swap_load.stop()
            status = node.status()
            steps.update(1)
        history = status.models[model_id].history
        node_steady = [s.latency_ms for s in samples if s.phase == "steady" and s.target == "node" and s.ok]
        direct_steady = [s.latency_ms for s in samples if s.phase == "steady" and s.target == "direct" and s.ok]
        during = [s.latency_ms for s in samples if s.phase == "swaps" and s.ok]
        stale = [s for s in samples if s.target == "node" and s.ok and not version_was_live(s, history)]
        failed = sum(not s.ok for s in samples) + len(stale)
        detail = {
            "p50_ms_node_steady": round(statistics.median(node_steady), 1),
            "p50_ms_direct_steady": round(statistics.median(direct_steady), 1),
            "p99_ms_direct_steady": round(percentile(direct_steady, 99), 1),
            "requests_during_swaps": len(during),
            "stale_versions": len(stale),
            "errors": sorted({s.error or "" for s in samples if not s.ok})[:3],
        }
        print(json.dumps(detail))
        return {
            "requests": len(samples),
            "failed": failed,
            "swaps": status.counters["swaps"] - before,
            "load_ms_p50": status.load_ms.get("p50"),
            "p99_ms_steady": round(percentile(node_steady, 99), 1),
            "p99_ms_during_swaps": round(percentile(during, 99), 1),
            "proxy_overhead_ratio": round(statistics.median(node_steady) / statistics.median(direct_steady), 4),
        }
    finally:
        steps.close()
        delete_adapters(s3, settings, model_id)
        _delete_topics(settings)


def _delete_topics(settings: Any) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(settings))
    for fut in admin.delete_topics([topic_name(k, settings) for k in TopicKey], operation_timeout=30).values():
        fut.exception()
