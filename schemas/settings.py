"""Connection settings shared by every part (the contract's side of configuration).

Each part has its own settings class that subclasses :class:`ContractSettings`, so one object holds
everything a part reads. The contract's fields are ``MC_<FIELD>`` everywhere; a part's own fields are
``MC_<PART>_<FIELD>`` (:func:`env_name`). Precedence: constructor arguments > ``MC_<PART>_*`` >
``MC_*`` environment variables (the old unprefixed names of part fields, deprecated) > defaults.
Objects are frozen; secrets are ``SecretStr`` and masked when printed.

Secrets are generated per install, never constants in the code: ``mc stack up`` writes the S3
credentials, vLLM's API key and the adapter signing key to ``{MC_STATE_DIR}/secrets.env`` (mode 0600),
and every part of that checkout reads them from there, below its environment in precedence (so
compose or a deployment passes its own through ``MC_*`` variables).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from schemas.errors import ConfigurationError

__all__ = ["SECRETS_FILE", "ContractSettings", "env_name", "secrets_path"]

SECRETS_FILE = "secrets.env"


def secrets_path() -> Path:
    """The per-install secrets file of this checkout's stack (``MC_STATE_DIR``, default ``.mc``)."""
    return Path(os.environ.get("MC_STATE_DIR") or ".mc") / SECRETS_FILE


def env_name(settings_cls: type[ContractSettings], field: str) -> str:
    """The environment variable ``field`` of ``settings_cls`` is read from.

    The contract's own fields (where Kafka, S3 and vLLM are: :class:`ContractSettings`) are ``MC_<FIELD>``
    for every part. A part's fields carry the part's prefix, ``MC_<PART>_<FIELD>`` (``part_prefix``:
    ``NODE``, ``TRAINER``, ``SDK``, ...), so two parts never read one name with two meanings; a field
    whose name already starts with the part's word keeps it once (``node_id``: ``MC_NODE_ID``).
    """
    part = settings_cls.part_prefix
    if part is None or field in ContractSettings.model_fields or field.startswith(f"{part.lower()}_"):
        return f"MC_{field}".upper()
    return f"MC_{part}_{field}".upper()


class _PartEnvSource(PydanticBaseSettingsSource):
    """The part's ``MC_<PART>_<FIELD>`` variables, above the ``MC_<FIELD>`` ones in precedence.

    The old unprefixed names still work for one release (the plain ``MC_`` source reads them) with a
    FutureWarning, shown by default, naming the new variable.
    """

    def __init__(self, settings_cls: type[ContractSettings]) -> None:
        super().__init__(settings_cls)
        self.part = settings_cls.part_prefix
        self._env = EnvSettingsSource(settings_cls, env_prefix=f"MC_{self.part}_")

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        cls = self.settings_cls
        assert issubclass(cls, ContractSettings)
        renamed = {f for f in cls.model_fields if env_name(cls, f) != f"MC_{f}".upper()}
        found = {k: v for k, v in self._env().items() if k in renamed}
        environ = {k.upper() for k in os.environ}
        for field in sorted(renamed - set(found)):
            old = f"MC_{field}".upper()
            if old in environ:  # shown once per variable (Python's default filter for FutureWarning)
                warnings.warn(
                    f"{old} is deprecated for {cls.__name__}: set {env_name(cls, field)} "
                    "(the unprefixed name is read for one more release)",
                    FutureWarning,
                    stacklevel=2,
                )
        return found


class ContractSettings(BaseSettings):
    """Where Kafka, S3 and vLLM are, and the shape of the topics."""

    model_config = SettingsConfigDict(env_prefix="MC_", frozen=True, extra="ignore")
    #: the part's word in its own variables' names (``MC_<PART>_<FIELD>``); None: every field is ``MC_<FIELD>``
    part_prefix: ClassVar[str | None] = None

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_properties: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka properties for every client, JSON (TLS/SASL: security.protocol, sasl.mechanism, "
        "sasl.username, ssl.ca.location, ...); see schemas.kafka_config",
    )
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
        if issubclass(settings_cls, ContractSettings) and settings_cls.part_prefix is not None:
            part = _PartEnvSource(settings_cls)
            return init_settings, part, env_settings, install, file_secret_settings
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
