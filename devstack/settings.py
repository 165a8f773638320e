"""Settings of the local stack (``mc stack``): where state and caches live, ports, versions."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from devstack.cpu import VllmDtype
from schemas.settings import ContractSettings

__all__ = ["KAFKA_VERSION", "MINIO_MODULE", "StackSettings"]

#: Apache Kafka's jars, resolved from Maven Central through devstack/kafka/pom.xml.
KAFKA_VERSION = "4.1.0"
#: MinIO publishes no semver tags, so the Go module proxy serves it under a pseudo-version; pinning
#: one keeps every machine on the same build.
MINIO_MODULE = "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"


def _default_cache() -> Path:
    return Path.home() / ".cache" / "maximum-continual"


class StackSettings(ContractSettings):
    """Everything ``mc stack`` reads. Runtime state is per checkout, caches are per user."""

    state_dir: Path = Field(Path(".mc"), description="pid files, logs and data of this checkout's stack")
    cache_dir: Path = Field(default_factory=_default_cache, description="per-user cache of slow builds")

    kafka_controller_port: int = 9093
    kafka_heap: str = "768m"
    minio_console_port: int = 9001
    vllm_max_model_len: int = 2048
    #: on the CPU this is the fraction of system RAM vLLM reserves for its KV cache
    vllm_kv_fraction: float = Field(0.3, gt=0, lt=1)
    vllm_max_loras: int = 4
    vllm_max_lora_rank: int = 16
    vllm_dtype: VllmDtype = Field(
        "auto", description="vLLM's --dtype; auto: bfloat16 where the CPU has AMX-BF16, else float32 (devstack/cpu.py)"
    )
    vllm_grouped_lora_ops: bool = Field(
        True, description="swap vLLM-CPU's per-token LoRA ops for grouped ones (devstack/vllm_lora.py)"
    )
    vllm_cpu_threads_bind: str = Field(
        "auto",
        description="vLLM's VLLM_CPU_OMP_THREADS_BIND: auto pins the model worker to one core and leaves the "
        "others to the engine core and a trainer; e.g. 0-1 computes on both cores of a 2-core machine",
    )
    vllm_extra_args: str = ""
    start_timeout_s: float = 240.0

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.rsplit(":", 1)[1])

    @property
    def s3_port(self) -> int:
        return int(self.s3_endpoint.rsplit(":", 1)[1].split("/")[0])

    @property
    def vllm_port(self) -> int:
        return int(self.vllm_url.rsplit(":", 1)[1].split("/")[0])
