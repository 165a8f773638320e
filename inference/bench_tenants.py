"""``mc bench tenants``: many model_ids, each with its own adapter, on one node and one vLLM.

vLLM is started with a few LoRA slots (``MC_VLLM_MAX_LORAS``, 4 by default; its CPU cache of adapters
has the same size), so most tenants are not resident at any moment: vLLM loads a tenant's adapter
from the node's local copy when a request needs it and evicts the least recently used one. The node
registers every tenant's live version with vLLM (the watcher's normal path) and routes by model_id.

1. fresh topics and ``tenants`` model_ids; one synthetic LoRA per tenant in S3, each announced (signed);
2. a node as its own process; wait until every tenant's v1 is live there;
3. ``clients`` threads send ``requests`` chats, tenants drawn from a Zipf law (a few hot tenants, a
   long tail), greedy, ``max_tokens`` tokens; a response must say version 1.

A request counts as *loading* when its tenant is not among the ``max_loras`` most recently requested
tenants before it (the LRU vLLM keeps), else *resident*: an estimate from the request order, not a
figure vLLM reports. Last line: tenants, requests, failed, p99_ms_resident, p99_ms_loading,
loads_per_s (estimated loads per second of the run).
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from inference.adapters import delete_adapters, upload_adapter, write_synthetic_adapter
from inference.api import VERSION_HEADER, Routes
from inference.bench import _checkpoint_dir, _delete_topics
from inference.launch import node_process
from inference.load import percentile
from inference.settings import InferenceSettings
from schemas.storage import s3_client
from schemas.topics import TopicKey

__all__ = ["run"]


@dataclass(frozen=True, slots=True)
class _Result:
    tenant: str
    resident: bool
    latency_ms: float
    ok: bool
    error: str | None


class _Plan:
    """The request order (Zipf over tenants) and the LRU estimate of what vLLM holds, under one lock."""

    def __init__(self, tenants: list[str], requests: int, slots: int, seed: int) -> None:
        rng = random.Random(seed)
        weights = [1 / (rank + 1) for rank in range(len(tenants))]
        self._order = rng.choices(tenants, weights=weights, k=requests)
        self._lru: OrderedDict[str, None] = OrderedDict()
        self._slots = slots
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[str, bool] | None:
        with self._lock:
            if self._next >= len(self._order):
                return None
            tenant = self._order[self._next]
            self._next += 1
            resident = tenant in self._lru
            self._lru[tenant] = None
            self._lru.move_to_end(tenant)
            while len(self._lru) > self._slots:
                self._lru.popitem(last=False)
            return tenant, resident


def _client(base_url: str, plan: _Plan, max_tokens: int, out: list[_Result], bar: Any) -> None:
    with httpx.Client(base_url=base_url, timeout=300) as http:
        while (item := plan.take()) is not None:
            tenant, resident = item
            body = {
                "model": tenant,
                "messages": [{"role": "user", "content": "Count from one to twenty in words."}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "ignore_eos": True,
            }
            t0 = time.perf_counter()
            error: str | None = None
            try:
                resp = http.post(Routes.CHAT, json=body)
                if resp.status_code != 200:
                    error = f"{resp.status_code}: {resp.text[:200]}"
                elif resp.headers.get(VERSION_HEADER) != "1":
                    error = f"answered by version {resp.headers.get(VERSION_HEADER)}, not 1"
            except httpx.HTTPError as exc:
                error = repr(exc)
            out.append(_Result(tenant, resident, (time.perf_counter() - t0) * 1000, error is None, error))
            bar.update(1)


def run(*, tenants: int = 50, requests: int = 400, clients: int = 4, max_tokens: int = 4) -> dict[str, Any]:
    from devstack import StackSettings
    from producers import EventPublisher, ProducerSettings, ensure_topics

    settings = ProducerSettings(topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    node_settings = InferenceSettings(topic_prefix=settings.topic_prefix)
    slots = StackSettings().vllm_max_loras
    run_id = uuid.uuid4().hex[:6]
    names = [f"bench-t{i:03d}-{run_id}" for i in range(tenants)]
    ensure_topics(settings)
    s3 = s3_client(settings)
    work = Path(tempfile.mkdtemp(prefix="mc-bench-tenants-"))
    try:
        checkpoint = _checkpoint_dir(node_settings)
        with EventPublisher(settings) as pub:
            for i, name in enumerate(tqdm(names, desc="adapters", unit="tenant")):
                folder = write_synthetic_adapter(checkpoint, work / name, seed=i)
                pub.publish(TopicKey.ADAPTER_UPDATES, upload_adapter(s3, settings, name, 1, folder)).result(30)
        env = {
            "MC_TOPIC_PREFIX": settings.topic_prefix,
            "MC_NODE_ADAPTER_CACHE_DIR": str(work / "cache"),
            "MC_NODE_ID": f"bench-tenants-{run_id}",
        }
        with node_process(env, log_path=work / "node.log", timeout_s=300) as node:
            deadline = time.monotonic() + 600
            while len([m for m in node.status().models.values() if m.version == 1]) < tenants:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not every tenant went live: {len(node.status().models)} of {tenants}")
                time.sleep(0.5)
            loads_before = node.status().counters.get("loads", 0)
            plan = _Plan(names, requests, slots, seed=7)
            results: list[_Result] = []
            started = time.perf_counter()
            with tqdm(total=requests, desc="requests", unit="req") as bar:
                threads = [
                    threading.Thread(target=_client, args=(node.base_url, plan, max_tokens, results, bar))
                    for _ in range(clients)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            wall = time.perf_counter() - started
            node_loads = node.status().counters.get("loads", 0) - loads_before
    finally:
        for name in names:
            delete_adapters(s3, settings, name)
        _delete_topics(settings)
    resident = [r.latency_ms for r in results if r.ok and r.resident]
    loading = [r.latency_ms for r in results if r.ok and not r.resident]
    print(
        json.dumps(
            {
                "slots": slots,
                "tenants_requested": len({r.tenant for r in results}),
                "loading_requests": sum(not r.resident for r in results),
                "p50_ms_resident": round(statistics.median(resident), 1) if resident else None,
                "p50_ms_loading": round(statistics.median(loading), 1) if loading else None,
                "node_loads_during_requests": node_loads,
                "errors": sorted({r.error or "" for r in results if not r.ok})[:3],
            }
        )
    )
    return {
        "tenants": tenants,
        "requests": len(results),
        "failed": sum(not r.ok for r in results),
        "p99_ms_resident": round(percentile(resident, 99), 1),
        "p99_ms_loading": round(percentile(loading, 99), 1),
        "loads_per_s": round(sum(not r.resident for r in results) / wall, 2),
    }
