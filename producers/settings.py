"""Settings of the publishing SDK and the consumer helper."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.settings import ContractSettings

__all__ = ["ProducerSettings"]


class ProducerSettings(ContractSettings):
    #: its own variables are MC_PRODUCER_<FIELD> (schemas.settings.env_name)
    part_prefix: ClassVar[str | None] = "PRODUCER"

    linger_ms: float = Field(5.0, ge=0, description="librdkafka linger.ms: batching delay")
    compression: str = Field("lz4", description="librdkafka compression.type")
    delivery_timeout_ms: int = Field(120_000, ge=1000, description="give up on a message after this")
    queue_full_timeout_s: float = Field(30.0, ge=0, description="how long publish waits for queue room")
