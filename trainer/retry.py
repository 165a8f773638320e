"""Which failures the trainer retries, and the retry loop.

* **transient**: the infrastructure failed, not the window: S3 (:class:`StorageError`, any botocore
  error), Kafka (:class:`KafkaError`, librdkafka's ``KafkaException``), timeouts and broken
  connections. Retried in a loop with exponential backoff, for as long as it takes (a window is
  never dead-lettered because S3 or Kafka was away); each retry is counted.
* **deterministic**: everything else (a window that fails to train or save, a parent adapter that
  fails its sha256). The window is attempted again up to ``MC_TRAINER_WINDOW_ATTEMPTS`` times, then
  dead-lettered as a whole and committed past (:mod:`trainer.worker`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from schemas.errors import AdapterError, KafkaError, StorageError

__all__ = ["Interrupted", "Retrier", "is_transient"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


class Interrupted(AdapterError):
    """The service was asked to stop while an operation waited to be retried."""


def is_transient(exc: BaseException) -> bool:
    """True for failures of the infrastructure (retry them), False for failures of the work itself."""
    if isinstance(exc, StorageError | KafkaError | TimeoutError | ConnectionError):
        return True
    try:
        from botocore.exceptions import BotoCoreError, ClientError
        from confluent_kafka import KafkaException
    except ImportError:  # pragma: no cover - both are trainer dependencies
        return False
    return isinstance(exc, BotoCoreError | ClientError | KafkaException)


class Retrier:
    """Runs an operation until it succeeds, sleeping ``initial_s``, ``2*initial_s``, ... (at most
    ``max_s``) after each transient failure; deterministic failures propagate at once."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        stop: threading.Event | None = None,
        on_retry: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.stop = stop or threading.Event()
        self.on_retry = on_retry
        #: transient failures retried so far
        self.retries = 0

    def __call__(self, what: str, fn: Callable[[], T]) -> T:
        delay = self.initial_s
        attempt = 1
        while True:
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.retries += 1
                if self.on_retry is not None:
                    self.on_retry(what, exc)
                _log.warning("%s failed (attempt %d), retrying in %.1f s: %s", what, attempt, delay, exc)
            if self.stop.wait(delay):
                raise Interrupted(f"{what}: stopped while retrying")
            delay = min(delay * 2, self.max_s)
            attempt += 1
