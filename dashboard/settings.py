"""Settings of the ops dashboard (``mc dashboard`` / ``mc status``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.settings import ContractSettings

__all__ = ["DashboardSettings"]


class DashboardSettings(ContractSettings):
    #: its own variables are MC_DASHBOARD_<FIELD> (schemas.settings.env_name)
    part_prefix: ClassVar[str | None] = "DASHBOARD"

    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8300, ge=0, le=65535)
    #: seconds between samples of offsets (events/s and the reward history are built from samples)
    dashboard_sample_s: float = Field(2.0, gt=0)
    #: samples kept for the charts
    dashboard_history: int = Field(300, ge=2)
    #: comma-separated base URLs of stream-processor web servers (their /reward-metrics JSON)
    processor_urls: str = ""
    #: comma-separated base URLs of inference nodes (their /status JSON)
    inference_urls: str = ""

    def urls(self, raw: str) -> list[str]:
        return [u.strip().rstrip("/") for u in raw.split(",") if u.strip()]
