"""The dashboard's snapshot in Prometheus' text exposition format (same figures as the page)."""

from __future__ import annotations

from typing import Any

__all__ = ["render"]


def _labels(**kw: object) -> str:
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in kw.items()
    )
    return "{" + inner + "}"


def render(snap: dict[str, Any]) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    lag = snap.get("lag", [])
    metric(
        "mc_consumer_lag_messages",
        "gauge",
        "end offset minus committed offset",
        [(_labels(group=r["group"], topic=r["topic"], partition=r["partition"]), r["lag_messages"]) for r in lag],
    )
    metric(
        "mc_consumer_lag_seconds",
        "gauge",
        "age of the oldest unconsumed record",
        [(_labels(group=r["group"], topic=r["topic"], partition=r["partition"]), r["lag_seconds"]) for r in lag],
    )
    metric(
        "mc_topic_events_total",
        "counter",
        "records ever written (sum of end offsets)",
        [(_labels(topic=t), n) for t, n in snap.get("events_total", {}).items()],
    )
    metric(
        "mc_topic_events_per_second",
        "gauge",
        "write rate over the last samples",
        [(_labels(topic=t), r) for t, r in snap.get("events_per_s", {}).items()],
    )
    metric(
        "mc_dead_letters_by_reason",
        "counter",
        "dead letters per reason, counted on the dead-letters topic",
        [(_labels(reason=k), v) for k, v in snap.get("dead_letters_by_reason", {}).items()],
    )
    rewards = snap.get("rewards", [])
    metric(
        "mc_reward_mean",
        "gauge",
        "mean reward per model and adapter version",
        [
            (_labels(model_id=r["model_id"], adapter_version=r["adapter_version"]), r["mean"])
            for r in rewards
            if r["mean"] is not None
        ],
    )
    metric(
        "mc_reward_count",
        "counter",
        "rewards per model and adapter version",
        [(_labels(model_id=r["model_id"], adapter_version=r["adapter_version"]), r["count"]) for r in rewards],
    )
    metric(
        "mc_inference_live_version",
        "gauge",
        "adapter version live on each inference node",
        [
            (_labels(node=n["node_id"], model_id=m), v)
            for n in snap.get("inference_nodes", [])
            for m, v in n["live"].items()
        ],
    )
    metric(
        "mc_inference_canary_version",
        "gauge",
        "adapter version under canary on each inference node (absent: none)",
        [
            (_labels(node=n["node_id"], model_id=m), c["version"])
            for n in snap.get("inference_nodes", [])
            for m, c in n.get("canary", {}).items()
        ],
    )
    metric(
        "mc_inference_refused_total",
        "counter",
        "adapter updates and requests an inference node refused, by reason",
        [
            (_labels(node=n["node_id"], reason=reason), count)
            for n in snap.get("inference_nodes", [])
            for reason, count in n.get("refused", {}).items()
        ],
    )
    return "\n".join(lines) + "\n"
