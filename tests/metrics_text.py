"""Prometheus text read back with ``prometheus_client``'s own parser (tests compare samples, not lines)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Labels", "families", "labels", "samples"]

Labels = tuple[tuple[str, str], ...]


def labels(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """``{(sample name, sorted labels): value}``; raises ValueError on text the parser refuses."""
    return {
        (s.name, labels(**s.labels)): s.value for family in text_string_to_metric_families(text) for s in family.samples
    }


def families(text: str) -> dict[str, str]:
    """``{family name: type}`` (a counter's family is named without ``_total``)."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}
