"""The faust-streaming worker: joins predictions with rewards into training examples.

``mc processor`` / ``python -m stream_processors`` runs one worker; the join's pure logic is in
:mod:`stream_processors.join`, expiry in :mod:`stream_processors.expiry`, the faust wiring in
:mod:`stream_processors.app`, the topics a worker creates and waits for before it starts in
:mod:`stream_processors.topics`, its HTTP bodies and their client in :mod:`stream_processors.api`. faust is
imported only when a worker is built.
"""

from stream_processors.api import ProcessorClient, ProcessorStats, RewardRow
from stream_processors.app import ProcessorApp, create_app
from stream_processors.cli import run_worker
from stream_processors.settings import ProcessorSettings

__all__ = [
    "ProcessorApp",
    "ProcessorClient",
    "ProcessorSettings",
    "ProcessorStats",
    "RewardRow",
    "create_app",
    "run_worker",
]
