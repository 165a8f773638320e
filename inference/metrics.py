"""Counters and load latencies of one node, rendered as JSON for /status and as Prometheus text."""

from __future__ import annotations

import statistics
from collections import Counter, deque

from inference.api import LiveAdapter

__all__ = ["COUNTERS", "NodeMetrics"]

#: every counter the node keeps (all start at 0 so dashboards see them before the first event)
COUNTERS = (
    "updates_seen",
    "updates_invalid",
    "updates_skipped",
    "verify_failures",
    "load_failures",
    "loads",
    "swaps",
    "canaries",
    "canary_failures",
    "canary_promote",
    "canary_refuse",
    "canary_inconclusive",
    "unloads",
    "unload_failures",
    "requests",
    "requests_canary",
    "requests_failed",
    "requests_retried",
    # requests the node's HTTP edge turned away before they reached vLLM, by reason
    "requests_refused_unauthorized",
    "requests_refused_too_large",
    "requests_refused_invalid",
    # adapter updates not signed by a trainer or pointing elsewhere (schemas.signing), by reason
    "updates_refused",
    "updates_refused_unsigned",
    "updates_refused_bad_signature",
    "updates_refused_foreign_uri",
)


class NodeMetrics:
    def __init__(self, window: int = 1000) -> None:
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._load_ms: deque[float] = deque(maxlen=window)

    def inc(self, name: str, by: int = 1) -> None:
        self.counters[name] += by

    def observe_load(self, ms: float) -> None:
        self._load_ms.append(ms)

    def load_summary(self) -> dict[str, float]:
        values = list(self._load_ms)
        if not values:
            return {"count": 0.0}
        return {
            "count": float(len(values)),
            "last": round(values[-1], 3),
            "p50": round(statistics.median(values), 3),
            "max": round(max(values), 3),
        }

    def prometheus(self, models: dict[str, LiveAdapter], caught_up: bool) -> str:
        lines = []
        for name in sorted(self.counters):
            metric = f"mc_inference_{name}_total"
            lines += [f"# TYPE {metric} counter", f"{metric} {self.counters[name]}"]
        lines += ["# TYPE mc_inference_caught_up gauge", f"mc_inference_caught_up {int(caught_up)}"]
        lines.append("# TYPE mc_inference_adapter_version gauge")
        lines += [f'mc_inference_adapter_version{{model_id="{_esc(m)}"}} {a.version}' for m, a in models.items()]
        lines.append("# TYPE mc_inference_in_flight gauge")
        lines += [f'mc_inference_in_flight{{model_id="{_esc(m)}"}} {a.in_flight}' for m, a in models.items()]
        summary = self.load_summary()
        lines.append("# TYPE mc_inference_adapter_load_ms summary")
        if "p50" in summary:
            lines.append(f'mc_inference_adapter_load_ms{{quantile="0.5"}} {summary["p50"]}')
        lines.append(f"mc_inference_adapter_load_ms_count {int(summary['count'])}")
        lines.append(f"mc_inference_adapter_load_ms_sum {round(sum(self._load_ms), 3)}")
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
