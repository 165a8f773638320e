"""Settings of the stream processor (``mc processor``).

Every field is read from an ``MC_``-prefixed environment variable (``MC_PROCESSOR_JOIN_TTL``,
``MC_PROCESSOR_APP_ID``, ...); precedence is constructor arguments > environment > defaults.
Durations accept seconds (``86400``), a number with a unit (``24h``, ``30m``, ``10s``, ``1d``) or
ISO 8601 (``PT24H``).
"""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from schemas.settings import ContractSettings

__all__ = ["ProcessorSettings"]


class ProcessorSettings(ContractSettings):
    """Where the worker keeps its state, how long the join waits, how it talks to Kafka."""

    #: its own variables are MC_PROCESSOR_<FIELD> (schemas.settings.env_name)
    part_prefix: ClassVar[str | None] = "PROCESSOR"

    processor_app_id: str = Field(
        "mc-processor", description="faust app id: the consumer group and the prefix of the changelog topics"
    )
    processor_data_dir: Path = Field(Path(".mc/processor"), description="faust data dir (RocksDB tables live here)")
    processor_store: Literal["auto", "rocksdb", "memory"] = Field(
        "auto", description="table store; auto = rocksdb when rocksdict is installed, memory otherwise"
    )
    processor_web_host: str = Field("127.0.0.1", description="address of the worker's web server")
    processor_web_port: int = Field(6066, ge=1, le=65535, description="port of the worker's web server")
    processor_standby_replicas: int = Field(0, ge=0, description="faust table standby replicas")

    join_ttl: timedelta = Field(
        timedelta(hours=24), description="event time an unmatched event waits (MC_PROCESSOR_JOIN_TTL)"
    )
    processor_idle_after: timedelta = Field(
        timedelta(seconds=60), description="wall time without records after which a partition counts as idle"
    )
    processor_expiry_interval_s: float = Field(1.0, gt=0, description="how often (wall) expiry looks at the state")
    processor_max_future_skew: timedelta = Field(
        timedelta(minutes=5), description="created_at further than this ahead of the record timestamp is clamped"
    )
    processor_metrics_half_life: timedelta = Field(
        timedelta(hours=1), description="half-life (event time) of the reward EMA"
    )

    processor_commit_interval_s: float = Field(1.0, gt=0, description="faust broker_commit_interval")
    processor_linger_ms: int = Field(5, ge=0, description="producer linger (batching delay)")
    processor_batch_max_records: int = Field(
        2000, ge=1, description="most source records handled as one batch (their outputs are awaited together)"
    )
    processor_session_timeout_s: float = Field(10.0, ge=6, description="consumer group session timeout")
    processor_heartbeat_s: float = Field(1.0, gt=0, description="consumer group heartbeat interval")
    processor_log_level: str = Field("warning", description="faust worker log level")

    @field_validator(
        "join_ttl", "processor_idle_after", "processor_max_future_skew", "processor_metrics_half_life", mode="before"
    )
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip().lower()
            units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
            for unit in sorted(units, key=len, reverse=True):
                number = text.removesuffix(unit)
                if number != text:
                    try:
                        return timedelta(seconds=float(number) * units[unit])
                    except ValueError:
                        break
            try:
                return timedelta(seconds=float(text))
            except ValueError:
                return value  # ISO 8601 and friends: pydantic parses them
        return value

    def resolved_store(self) -> Literal["rocksdb", "memory"]:
        """The store actually used (``auto`` resolved by whether rocksdict imports)."""
        if self.processor_store == "auto":
            return "rocksdb" if importlib.util.find_spec("rocksdict") is not None else "memory"
        return self.processor_store

    @property
    def ttl_ms(self) -> int:
        return int(self.join_ttl.total_seconds() * 1000)
