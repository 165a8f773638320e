"""Connection settings shared by every part (the contract's side of configuration).

Each part has its own settings class that subclasses :class:`ContractSettings`, so one object holds
everything a part reads. Precedence: constructor arguments > ``MC_*`` environment variables >
defaults. Objects are frozen; secrets are ``SecretStr`` and masked when printed.

Secrets are generated per install, never constants in the code: ``mc stack up`` writes the S3
credentials, vLLM's API key and the adapter signing key to ``{MC_STATE_DIR}/secrets.env`` (mode 0600),
and every part of that checkout reads them from there, below its environment in precedence (so
compose or a deployment passes its own through ``MC_*`` variables).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.errors import ConfigurationError

__all__ = ["SECRETS_FILE", "ContractSettings", "secrets_path"]

SECRETS_FILE = "secrets.env"


def secrets_path() -> Path:
    """The per-install secrets file of this checkout's stack (``MC_STATE_DIR``, default ``.mc``)."""
    return Path(os.environ.get("MC_STATE_DIR") or ".mc") / SECRETS_FILE


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
    s3_access_key: str | None = Field(None, description="S3 access key (generated per install by mc stack up)")
    s3_secret_key: SecretStr | None = Field(None, description="S3 secret key (generated per install)")

    vllm_url: str = Field("http://127.0.0.1:8000", description="vLLM's OpenAI-compatible server")
    base_model_name: str = Field("smollm2-135m-instruct", description="served name of the base model")
    vllm_api_key: SecretStr | None = Field(
        None, description="vLLM's API key (bearer token; generated per install, vLLM started with it)"
    )
    adapter_signing_key: SecretStr | None = Field(
        None, description="HMAC key shared by trainers and nodes: nodes serve only updates signed with it"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The path is read at each construction, so MC_STATE_DIR set by a test or a caller counts.
        install = DotEnvSettingsSource(settings_cls, env_file=secrets_path(), env_prefix="MC_")
        return init_settings, env_settings, install, file_secret_settings

    def s3_credentials(self) -> tuple[str, str]:
        """(access key, secret key), or a ConfigurationError saying where they come from."""
        if not self.s3_access_key or self.s3_secret_key is None:
            raise ConfigurationError(
                f"no S3 credentials: `mc stack up` writes them to {secrets_path()}, "
                "or set MC_S3_ACCESS_KEY and MC_S3_SECRET_KEY"
            )
        return self.s3_access_key, self.s3_secret_key.get_secret_value()

    def signing_key(self) -> bytes:
        """The adapter signing key, or a ConfigurationError (a trainer cannot announce, a node cannot trust)."""
        if self.adapter_signing_key is None or len(self.adapter_signing_key.get_secret_value()) < 32:
            raise ConfigurationError(
                f"no adapter signing key (32+ characters): `mc stack up` writes one to {secrets_path()}, "
                "or set MC_ADAPTER_SIGNING_KEY to the same value on trainers and nodes"
            )
        return self.adapter_signing_key.get_secret_value().encode()

    def vllm_headers(self) -> dict[str, str]:
        """The Authorization header vLLM wants (none when it has no API key)."""
        if self.vllm_api_key is None:
            return {}
        return {"Authorization": f"Bearer {self.vllm_api_key.get_secret_value()}"}
