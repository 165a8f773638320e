"""The node's per-model request series (pure: the registry, no server)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from inference.metrics import NodeMetrics


def test_requests_are_counted_per_model_and_answering_version():
    m = NodeMetrics()
    m.answered("shop", 3, 0.2, ok=True)
    m.answered("shop", 3, 0.4, ok=True)
    m.answered("shop", 4, 1.5, ok=False)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(m.exposition({}, True).decode())
        for s in family.samples
    }
    ok = (("adapter_version", "3"), ("model_id", "shop"), ("outcome", "ok"))
    failed = (("adapter_version", "4"), ("model_id", "shop"), ("outcome", "failed"))
    assert samples[("mc_inference_model_requests_total", ok)] == 2
    assert samples[("mc_inference_model_requests_total", failed)] == 1
    assert samples[("mc_inference_request_seconds_count", (("model_id", "shop"),))] == 3
    assert abs(samples[("mc_inference_request_seconds_sum", (("model_id", "shop"),))] - 2.1) < 1e-9
