"""The worker's JSON endpoints (faust's web server), for the dashboard and for tests.

The bodies are the models of :mod:`stream_processors.api`, which its client parses:

* ``GET /rewards/`` (:class:`RewardsBody`): reward metrics per (model_id, adapter_version) over the
  partitions this worker owns; with several workers, the dashboard sums the ``count``s and weights the
  means (each row lists its partitions, so nothing is counted twice).
* ``GET /processor/`` (:class:`ProcessorStats`): counters (joined, duplicates, dead letters by reason,
  expiries), watermarks, assigned partitions.
* ``GET /metrics``: the same figures in Prometheus' text format (:mod:`stream_processors.prometheus`).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_processors.api import RewardsBody, Routes
from stream_processors.prometheus import processor_registry
from stream_processors.worker import Processor

__all__ = ["register_pages"]


def register_pages(app: Any, proc: Processor) -> None:
    registry = processor_registry(proc)  # the worker's own: several workers in one process do not collide

    @app.page(Routes.REWARDS)  # type: ignore[untyped-decorator]
    async def rewards(web: Any, request: Any) -> Any:
        return web.json(RewardsBody(models=proc.reward_metrics()).model_dump(mode="json"))

    @app.page(Routes.PROCESSOR)  # type: ignore[untyped-decorator]
    async def processor(web: Any, request: Any) -> Any:
        return web.json(proc.stats().model_dump(mode="json"))

    @app.page(Routes.METRICS)  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        # the content type goes in the headers: aiohttp refuses a charset inside content_type=
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
