"""The one builder of librdkafka configurations: every Kafka client of the project (producers,
consumers, admin clients) starts from :func:`kafka_config`, so where the broker is and how to reach it
(TLS, SASL: ``MC_KAFKA_PROPERTIES``) are set in one place and reach every part.

faust's own client (aiokafka, in the stream processor) is configured apart: it takes its broker
credentials in faust's terms, not librdkafka properties.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.settings import ContractSettings

__all__ = ["kafka_config"]


def kafka_config(settings: ContractSettings, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``bootstrap.servers``, then the install's connection properties (``kafka_properties``: e.g.
    ``security.protocol``, ``sasl.mechanism``, ``ssl.ca.location``), then the client's own ``extra``
    (group ids, offsets, producer guarantees). Later keys win."""
    return {"bootstrap.servers": settings.kafka_bootstrap, **settings.kafka_properties, **(extra or {})}
