"""Samples everything the dashboard shows, on one thread, into one JSON-ready snapshot.

Sources, all real: Kafka (consumer lag, end offsets → events/s, dead-letter count), the stream
processors' ``/rewards/`` and ``/processor/`` (through :class:`~stream_processors.api.ProcessorClient`),
and the inference nodes' ``/status``. A source that does not answer shows as an error in the
snapshot; it never stops the others.

The canary (issue #14): per model, what the nodes say is live and under canary, the last verdict
they read (the gate's figures as announced), and both versions' reward count and mean from the
processors' ``/rewards/`` (all the version's rewards, not only the gate's comparison window).

Totals that must not fall when a worker restarts come from the topics, not from the workers' counters
(in memory, zero after a restart): dead letters by reason are counted from the ``dead-letters`` topic
(:mod:`dashboard.dead_letters`), joined examples are the ``training-examples`` topic's end offsets
(examples written, a re-emission after a crash included: the trainer keys them by ``example_id``).
The workers' own counters are shown beside them, per worker, as what they are.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import deque
from datetime import UTC, datetime
from typing import Any

from dashboard.dead_letters import DeadLetterCounts
from dashboard.lag import LagReader
from dashboard.settings import DashboardSettings
from schemas.topics import TopicKey, topic_name
from stream_processors.api import ProcessorClient, ProcessorStats, RewardRow

__all__ = ["Collector"]


def _get_json(url: str, timeout_s: float = 3.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.load(resp)


class Collector:
    def __init__(self, settings: DashboardSettings | None = None, *, group_prefix: str = "") -> None:
        self.s = settings or DashboardSettings()
        self.group_prefix = group_prefix
        self.topics = [topic_name(k, self.s) for k in TopicKey]
        self._lag = LagReader(self.s)
        self._dead = DeadLetterCounts(self.s, topic_name(TopicKey.DEAD_LETTERS, self.s))
        self._processors = {url: ProcessorClient(url, timeout_s=3.0) for url in self.s.urls(self.s.processor_urls)}
        self._totals: deque[tuple[float, dict[str, int]]] = deque(maxlen=self.s.dashboard_history)
        self._rewards: deque[dict[str, Any]] = deque(maxlen=self.s.dashboard_history)
        self._snapshot: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> dict[str, Any]:
        """Take one sample now and return the new snapshot."""
        now = time.time()
        errors: dict[str, str] = {}
        lag: list[dict[str, Any]] = []
        rates: dict[str, float] = {}
        totals: dict[str, int] = {}
        try:
            lag = [row.to_dict() for row in self._lag.read(self.group_prefix)]
            totals = self._lag.topic_end_totals(self.topics)
            self._totals.append((now, totals))
            if len(self._totals) >= 2:
                t0, first = self._totals[max(0, len(self._totals) - 6)]  # rate over the last ~5 samples
                t1, last = self._totals[-1]
                rates = {t: round((last.get(t, 0) - first.get(t, 0)) / max(t1 - t0, 1e-9), 2) for t in last}
        except Exception as exc:  # Kafka down: show it, keep the page alive
            errors["kafka"] = f"{type(exc).__name__}: {exc}"

        dead_by_reason: dict[str, int] = {}
        try:
            dead_by_reason = self._dead.read()
        except Exception as exc:
            errors["dead-letters"] = f"{type(exc).__name__}: {exc}"

        reward_rows: list[list[RewardRow]] = []
        live = []
        for url, client in self._processors.items():
            try:
                reward_rows.append(client.rewards())
                live.append(_live(url, client.stats()))
            except Exception as exc:
                errors[url] = f"{type(exc).__name__}: {exc}"
        rewards = _merge_rewards(reward_rows)
        if rewards:
            self._rewards.append({"t": now, "rows": rewards})

        nodes = []
        for url in self.s.urls(self.s.inference_urls):
            try:
                status = _get_json(f"{url}/status")
                nodes.append(
                    {
                        "url": url,
                        "node_id": status.get("node_id"),
                        "live": {m: v.get("version") for m, v in status.get("models", {}).items()},
                        "last_update": status.get("last_update"),
                        "load_ms": status.get("load_ms"),
                        "refused": _refusals(status.get("counters", {})),
                        "canary": {m: v["canary"] for m, v in status.get("models", {}).items() if v.get("canary")},
                        "decisions": {
                            m: v["decision"] for m, v in status.get("models", {}).items() if v.get("decision")
                        },
                    }
                )
            except Exception as exc:
                errors[url] = f"{type(exc).__name__}: {exc}"

        dead = totals.get(topic_name(TopicKey.DEAD_LETTERS, self.s))
        joined = totals.get(topic_name(TopicKey.TRAINING_EXAMPLES, self.s))
        snapshot = {
            "sampled_at": now,
            "lag": lag,
            "events_total": totals,
            "events_per_s": rates,
            "dead_letters_total": dead,
            "dead_letters_by_reason": dead_by_reason,
            "joined_total": joined,
            "processors": live,
            "rewards": rewards,
            "reward_history": list(self._rewards),
            "inference_nodes": nodes,
            "canaries": _canaries(nodes, rewards),
            "errors": errors,
        }
        with self._lock:
            self._snapshot = snapshot
        return snapshot

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot or {}

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.s.dashboard_sample_s)

        self.sample()
        self._thread = threading.Thread(target=loop, name="mc-dashboard-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        self._lag.close()
        self._dead.close()
        for client in self._processors.values():
            client.close()


def _merge_rewards(processors: list[list[RewardRow]]) -> list[dict[str, Any]]:
    """Rows per (model_id, adapter_version) summed over workers (each owns distinct partitions):
    counts added, means weighted by count, the newest event time (unix ms) as ``last_update``."""
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for rows in processors:
        for row in rows:
            acc = merged.setdefault((row.model_id, row.adapter_version), {"count": 0, "sum": 0.0, "last_update_ms": 0})
            acc["count"] += row.count
            acc["sum"] += (row.mean or 0.0) * row.count
            acc["last_update_ms"] = max(acc["last_update_ms"], row.last_update_ms)
    out = []
    for (model_id, version), acc in sorted(merged.items()):
        last = acc["last_update_ms"]
        out.append(
            {
                "model_id": model_id,
                "adapter_version": version,
                "count": acc["count"],
                "mean": round(acc["sum"] / acc["count"], 4) if acc["count"] else None,
                "last_update": datetime.fromtimestamp(last / 1000, UTC).isoformat() if last else None,
            }
        )
    return out


def _canaries(nodes: list[dict[str, Any]], rewards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model with a canary or a verdict: candidate against live, as the nodes and processors see them."""
    by_version = {(r["model_id"], r["adapter_version"]): r for r in rewards}
    out: dict[str, dict[str, Any]] = {}
    for node in nodes:
        for model in {*node.get("canary", {}), *node.get("decisions", {})}:
            row = out.setdefault(model, {"model_id": model, "nodes": [], "live": set(), "canary": set()})
            row["nodes"].append(node["node_id"])
            row["live"].add(node["live"].get(model, 0))
            canary = node.get("canary", {}).get(model)
            row["canary"].add(canary["version"] if canary else None)
            if canary:
                row["fraction"] = canary["fraction"]
            row["decision"] = node.get("decisions", {}).get(model) or row.get("decision")
    rows = []
    for model, row in sorted(out.items()):
        live = sorted(row.pop("live"))
        canary = sorted(row.pop("canary"), key=lambda v: -1 if v is None else v)
        decision = row.get("decision") or {}
        candidate = canary[-1] if canary[-1] is not None else decision.get("candidate_version")
        live_rw = by_version.get((model, live[-1]), {})
        cand_rw = by_version.get((model, candidate), {}) if candidate is not None else {}
        rows.append(
            {
                **row,
                "live_version": live[-1],
                "canary_version": canary[-1],
                "nodes_agree": len(live) == 1 and len(canary) == 1,
                "candidate_version": candidate,
                "candidate_rewards": cand_rw.get("count"),
                "candidate_mean": cand_rw.get("mean"),
                "live_rewards": live_rw.get("count"),
                "live_mean": live_rw.get("mean"),
            }
        )
    return rows


def _live(url: str, stats: ProcessorStats) -> dict[str, Any]:
    """One worker's own view, since it started (its counters restart at zero with it)."""
    reasons = {k.removeprefix("dead_letters."): n for k, n in stats.counters.items() if k.startswith("dead_letters.")}
    return {
        "url": url,
        "assigned": stats.assigned,
        "records": stats.counters.get("records", 0),
        "joined": stats.counters.get("joined", 0),
        "dead_letters": stats.counters.get("dead_letters", 0),
        "dead_letters_by_reason": reasons,
    }


def _refusals(counters: dict[str, int]) -> dict[str, int]:
    """A node's refusals by reason: forged adapter updates (``updates_refused_unsigned``, ...) and
    refused requests (``requests_refused_unauthorized``, ...); the per-reason counters, not totals."""
    prefixes = ("updates_refused_", "requests_refused_")
    return {k: int(v) for k, v in sorted(counters.items()) if k.startswith(prefixes)}
