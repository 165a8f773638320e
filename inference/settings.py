"""Settings of the inference node (``mc inference-node``).

Precedence: constructor arguments > ``MC_*`` environment variables > defaults (see
:class:`schemas.settings.ContractSettings`, whose Kafka, S3 and vLLM fields this class inherits).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from schemas.settings import ContractSettings

__all__ = ["InferenceSettings"]


def _default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _default_cache() -> Path:
    return Path.home() / ".cache" / "maximum-continual" / "inference" / "adapters"


class InferenceSettings(ContractSettings):
    """Everything the inference node reads."""

    #: its own variables are MC_NODE_<FIELD> (schemas.settings.env_name)
    part_prefix: ClassVar[str | None] = "NODE"

    node_host: str = Field("127.0.0.1", description="address the node's HTTP server binds")
    node_port: int = Field(8100, ge=1, le=65535, description="port of the node's HTTP server")
    node_id: str = Field(default_factory=_default_node_id, description="this node's name (consumer identity)")
    adapter_cache_dir: Path = Field(default_factory=_default_cache, description="local copies of adapters")
    request_timeout_s: float = Field(600.0, gt=0, description="how long a proxied request may take at vLLM")
    admin_timeout_s: float = Field(60.0, gt=0, description="timeout of load/unload calls to vLLM")
    drain_timeout_s: float = Field(600.0, ge=0, description="longest wait for in-flight requests before unload")
    unload_grace_s: float = Field(
        2.0, ge=0, description="extra wait after the drain before unloading (other nodes sharing vLLM catch up)"
    )
    unload_on_shutdown: bool = Field(True, description="unload this node's adapters from vLLM when it stops")
    load_retries: int = Field(3, ge=1, description="attempts to download+load one version before giving up")
    history_size: int = Field(50, ge=1, description="switches per model kept for /status")
    canary_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description="share of a model's requests the gate's canary version answers while one runs (issue #14)",
    )

    # The HTTP edge: who may call /v1/... and how much one request may ask for.
    node_api_keys: SecretStr | None = Field(
        None,
        description="bearer tokens accepted on /v1/... routes, comma-separated (unset or empty: no check)",
    )
    node_max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="largest request body accepted (413)")
    node_max_tokens: int = Field(
        4096, ge=1, description="largest max_tokens / max_completion_tokens a request may ask for (400)"
    )
    node_max_n: int = Field(4, ge=1, description="most choices (n) one request may ask for (400)")

    def node_tokens(self) -> tuple[str, ...]:
        """The bearer tokens /v1/... routes accept; empty when the node is open to anyone."""
        if self.node_api_keys is None:
            return ()
        return tuple(t for t in (part.strip() for part in self.node_api_keys.get_secret_value().split(",")) if t)
