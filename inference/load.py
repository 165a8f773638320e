"""Closed-loop load: N client threads keep sending chat requests; every request is recorded.

Shared by ``mc bench swap`` and the hot-swap tests. Each client cycles over its targets (a node, or
vLLM itself), so latencies through a node and straight to vLLM are measured in the same run, under
the same load. A sample that names an adapter version can be checked against the node's history:
:func:`version_was_live`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from inference.api import VERSION_HEADER, Routes, SwitchRecord

__all__ = ["LoadGenerator", "Sample", "Target", "first_logprob", "percentile", "version_was_live"]


@dataclass(frozen=True, slots=True)
class Target:
    name: str  #: a label: "node-a", "direct", ...
    base_url: str
    model: str
    via_node: bool
    #: e.g. the Authorization header vLLM or a node with MC_NODE_API_KEYS wants
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sample:
    target: str
    phase: str
    start: float  #: unix seconds, comparable with the node's SwitchRecord times
    end: float
    latency_ms: float
    ok: bool
    version: int | None
    error: str | None = None
    #: log-probability of the first generated token: with greedy decoding and one fixed prompt it
    #: tells which weights answered (tests compare it with each version's own)
    first_logprob: float | None = None


def first_logprob(completion: dict[str, Any]) -> float | None:
    """The first generated token's log-probability in an OpenAI chat completion (None without logprobs)."""
    try:
        return float(completion["choices"][0]["logprobs"]["content"][0]["logprob"])
    except (KeyError, IndexError, TypeError):
        return None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def version_was_live(sample: Sample, history: Sequence[SwitchRecord]) -> bool:
    """Whether the version the sample names was live at the node at some point during the request."""
    return any(
        rec.version == sample.version
        and rec.live_from <= sample.end
        and (rec.live_until is None or rec.live_until >= sample.start)
        for rec in history
    )


class LoadGenerator:
    def __init__(
        self, targets_per_client: Sequence[Sequence[Target]], *, max_tokens: int = 16, timeout_s: float = 300.0
    ) -> None:
        self.phase = "warmup"
        self.samples: list[Sample] = []
        self._targets = targets_per_client
        self._max_tokens = max_tokens
        self._timeout = timeout_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def body(self, model: str, via_node: bool) -> dict[str, object]:
        # ignore_eos: every request generates exactly max_tokens, so latencies compare like with like.
        body: dict[str, object] = {
            "model": model,
            "max_tokens": self._max_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "Count from one to twenty in words."}],
        }
        if not via_node:  # what the node adds on its own, so both paths ask vLLM for the same work
            body |= {"logprobs": True, "return_tokens_as_token_ids": True}
        return body

    def start(self) -> None:
        for i, targets in enumerate(self._targets):
            thread = threading.Thread(target=self._client, args=(list(targets),), name=f"load-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> list[Sample]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return list(self.samples)

    def _client(self, targets: list[Target]) -> None:
        clients = {
            t.base_url: httpx.Client(base_url=t.base_url, timeout=self._timeout, headers=t.headers) for t in targets
        }
        i = 0
        try:
            while not self._stop.is_set():
                target = targets[i % len(targets)]
                i += 1
                phase, start, t0 = self.phase, time.time(), time.perf_counter()
                version: int | None = None
                error: str | None = None
                first: float | None = None
                try:
                    resp = clients[target.base_url].post(Routes.CHAT, json=self.body(target.model, target.via_node))
                    ok = resp.status_code == 200
                    if not ok:
                        error = f"{resp.status_code}: {resp.text[:200]}"
                    else:
                        first = first_logprob(resp.json())
                    if target.via_node and VERSION_HEADER in resp.headers:
                        version = int(resp.headers[VERSION_HEADER])
                except (httpx.HTTPError, ValueError) as exc:
                    ok, error = False, repr(exc)
                latency = (time.perf_counter() - t0) * 1000
                sample = Sample(target.name, phase, start, time.time(), latency, ok, version, error, first)
                with self._lock:
                    self.samples.append(sample)
        finally:
            for client in clients.values():
                client.close()
