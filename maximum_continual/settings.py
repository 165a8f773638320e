"""Settings of the client SDK.

Precedence: arguments to :class:`~maximum_continual.MaximumContinual` > ``MC_*`` environment
variables > defaults. The Kafka, S3 and vLLM fields come from :class:`schemas.settings.ContractSettings`,
the producer's from :class:`producers.ProducerSettings`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from maximum_continual.sandbox.limits import DEFAULT_CPU_S, DEFAULT_MEMORY_MIB, MIN_MEMORY_MIB
from producers.settings import ProducerSettings

__all__ = ["ClientSettings"]


class ClientSettings(ProducerSettings):
    """Everything the SDK reads (``MC_SDK_*``, and the contract's ``MC_*``)."""

    #: its own variables are MC_SDK_<FIELD> (schemas.settings.env_name)
    part_prefix: ClassVar[str | None] = "SDK"

    inference_url: str | None = Field(
        "http://127.0.0.1:8100",
        description="the inference node (OpenAI-compatible). Empty/None: talk straight to vLLM's base model "
        "(no adapters: predictions never use what was learned)",
    )
    api_key: SecretStr | None = Field(
        None, description="bearer token sent to the inference endpoint, if it wants one (masked when printed)"
    )
    request_timeout_s: float = Field(300.0, gt=0, description="timeout of one completion request")
    max_steps: int = Field(6, ge=1, description="agent steps (model turns) before predict gives up")
    step_timeout_s: float = Field(10.0, gt=0, description="wall-clock limit of one code execution")
    max_tokens: int = Field(384, ge=1, description="completion tokens per model turn")
    temperature: float = Field(0.7, ge=0, description="sampling temperature of each model turn")
    max_print_chars: int = Field(4000, ge=100, description="printed output kept per step (the observation)")
    sandbox_memory_mib: int = Field(
        DEFAULT_MEMORY_MIB, ge=MIN_MEMORY_MIB, description="address space of the process that runs an agent's code"
    )
    sandbox_cpu_s: int = Field(
        DEFAULT_CPU_S, ge=1, description="CPU seconds of that process (per agent run; past it the process is replaced)"
    )
    allow_unsafe_imports: bool = Field(
        False,
        description="let additional_authorized_imports name modules on the sandbox's deny list (os, subprocess, "
        "socket, '*', ...): the agent's code then reaches files, processes or the network",
    )
    publish_timeout_s: float = Field(30.0, gt=0, description="how long predict/update wait for Kafka's ack")
    deploy_timeout_s: float = Field(600.0, gt=0, description="how long auto_deploy waits for the local stack")
