"""Run one node: uvicorn serving :func:`inference.proxy.create_app`."""

from __future__ import annotations

import logging

from inference.settings import InferenceSettings

__all__ = ["serve"]


def serve(settings: InferenceSettings, *, log_level: str = "info") -> None:
    import uvicorn

    from inference.proxy import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # access_log off: one log line per request costs more than the proxy itself on a small machine.
    uvicorn.run(
        create_app(settings),
        host=settings.node_host,
        port=settings.node_port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
