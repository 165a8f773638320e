"""Connection settings shared by every part (the contract's side of configuration).

Each part has its own settings class that subclasses :class:`ContractSettings`, so one object holds
everything a part reads. Precedence: constructor arguments > ``MC_*`` environment variables >
defaults. Objects are frozen; secrets are ``SecretStr`` and masked when printed.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ContractSettings"]


class ContractSettings(BaseSettings):
    """Where Kafka, S3 and vLLM are, and the shape of the topics."""

    model_config = SettingsConfigDict(env_prefix="MC_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    topic_prefix: str = Field("mc.", description="prefix of every topic name")
    partitions: int = Field(6, ge=1, description="partitions of predictions and rewards (co-partitioned)")
    replication_factor: int = Field(1, ge=1)
    max_event_bytes: int = Field(1_048_576, ge=1024, description="largest encoded event accepted")

    s3_endpoint: str = Field("http://127.0.0.1:9000", description="S3-compatible endpoint URL")
    s3_region: str = "us-east-1"
    s3_bucket: str = "mc-adapters"
    s3_access_key: str = "mcadmin"
    s3_secret_key: SecretStr = SecretStr("mcadmin-secret-key")

    vllm_url: str = Field("http://127.0.0.1:8000", description="vLLM's OpenAI-compatible server")
    base_model_name: str = Field("smollm2-135m-instruct", description="served name of the base model")
