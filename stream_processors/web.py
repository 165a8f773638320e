"""The worker's JSON endpoints (faust's web server), for the dashboard and for tests.

* ``GET /rewards/``: reward metrics per (model_id, adapter_version) over the partitions this
  worker owns; with several workers, the dashboard sums the ``count``s and weights the means (each
  row lists its partitions, so nothing is counted twice).
* ``GET /processor/``: counters (joined, duplicates, dead letters by reason, expiries), watermarks.
"""

from __future__ import annotations

from typing import Any

from stream_processors.worker import Processor

__all__ = ["register_pages"]


def register_pages(app: Any, proc: Processor) -> None:
    @app.page("/rewards/")  # type: ignore[untyped-decorator]
    async def rewards(web: Any, request: Any) -> Any:
        return web.json({"models": proc.reward_metrics()})

    @app.page("/processor/")  # type: ignore[untyped-decorator]
    async def processor(web: Any, request: Any) -> Any:
        return web.json(proc.stats())
