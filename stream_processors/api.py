"""The worker's HTTP interface, defined once: route paths, the bodies, and the client.

:mod:`stream_processors.web` serves these models (built by :class:`~stream_processors.worker.Processor`);
:class:`ProcessorClient` calls the same paths and parses the same models, so the dashboard, the chaos
harness and the bench cannot drift from what a worker reports (as :mod:`inference.api` does for the
inference node).

Everything here is one worker's view: its counters live in memory and restart at zero with the
process, and its rows cover only the partitions it owns. Totals that must survive a restart come
from the topics themselves (the dashboard reads ``dead-letters`` and ``training-examples``).
"""

from __future__ import annotations

from types import TracebackType

import httpx
from pydantic import BaseModel, Field

__all__ = ["PartitionClock", "ProcessorClient", "ProcessorStats", "RewardRow", "RewardsBody", "Routes"]


class Routes:
    REWARDS = "/rewards/"
    PROCESSOR = "/processor/"
    METRICS = "/metrics"


class RewardRow(BaseModel):
    """Reward metrics of one (model_id, adapter_version) over the partitions this worker owns."""

    model_id: str
    adapter_version: int
    count: int
    mean: float | None = Field(description="None before the first reward")
    ema: float | None = Field(description="mean weighted by event time, half-life ``ema_half_life_s``")
    ema_half_life_s: float
    last_update_ms: int = Field(description="newest event time counted, unix ms; 0 when none")
    partitions: list[int] = Field(description="the partitions these figures cover (workers own distinct ones)")


class RewardsBody(BaseModel):
    """``GET /rewards/``."""

    models: list[RewardRow]


class PartitionClock(BaseModel):
    """Event time on one source partition."""

    event_ms: int | None = Field(description="newest event time seen, unix ms")
    watermark_ms: int | None = Field(description="what expiry compares deadlines with")
    idle: bool = Field(description="no record for a while: the watermark follows the wall clock")


class ProcessorStats(BaseModel):
    """``GET /processor/``: this worker's counters since it started, and its partitions."""

    assigned: list[int] | None = Field(description="partitions owned; None until the tables are recovered")
    counters: dict[str, int] = Field(
        description="records, joined, duplicate_*, dead_letters and dead_letters.<reason>, expired_*, replayed"
    )
    states_indexed: int = Field(description="join states waiting in the expiry index")
    watermarks: dict[int, PartitionClock]
    first_record_at: float | None = Field(description="time.monotonic() of the first record (the worker's clock)")
    last_join_at: float | None = Field(description="time.monotonic() of the last example emitted")


class ProcessorClient:
    """A small synchronous client of one worker's web port (the dashboard, chaos runs, the bench)."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def rewards(self) -> list[RewardRow]:
        resp = self._http.get(Routes.REWARDS)
        resp.raise_for_status()
        return RewardsBody.model_validate_json(resp.content).models

    def stats(self) -> ProcessorStats:
        resp = self._http.get(Routes.PROCESSOR)
        resp.raise_for_status()
        return ProcessorStats.model_validate_json(resp.content)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProcessorClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
