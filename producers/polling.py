"""Who serves a producer's delivery reports, and on which thread.

librdkafka only runs delivery callbacks inside ``poll()``/``flush()``, and confluent-kafka takes the
GIL once per report. A background thread that polls while the app is busy publishing must wrest the
GIL from the app's thread for every report (the interpreter hands it over only at its 5 ms switch
interval), so the two threads stall each other. :class:`ReportPump` therefore serves reports on the
publishing thread itself, a batch every ``every`` publishes, and its background thread stays out of
the way while that happens; once the app stops publishing, the thread serves them within a few ms.

confluent-kafka's ``poll()`` is not re-entrant: polling from inside a delivery callback (an app's
done-callback that publishes, say) aborts the process once the outer poll serves its next report
(``CallState_get: Assertion `cs != NULL' failed``). Every poll and flush here goes through a
per-thread guard, so a nested one is skipped (poll) or refused (flush) instead.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from schemas.errors import PublishError

__all__ = ["ReportPump"]


class ReportPump:
    """Serves ``producer``'s delivery reports: inline between publishes, else on a daemon thread."""

    def __init__(
        self, producer: Any, *, every: int = 128, idle_poll_s: float = 0.05, back_off_s: float = 0.005
    ) -> None:
        self._producer = producer
        self.every = every  # publishes between two inline polls
        self._idle_poll_s = idle_poll_s
        self._back_off_s = back_off_s
        self._inline = False  # an app thread served reports since the background thread last looked
        self._stopped = False
        self._local = threading.local()  # .polling: this thread is inside poll()/flush()
        self._thread = threading.Thread(target=self._run, name="mc-publisher-poll", daemon=True)
        self._thread.start()

    def serve_inline(self) -> None:
        """Serve the reports that are ready, on the calling (publishing) thread, without waiting."""
        self._inline = True
        self.poll(0)

    def poll(self, timeout_s: float) -> int:
        """``producer.poll()``; inside a delivery callback, only wait (another thread serves reports)."""
        local = self._local
        if getattr(local, "polling", False):
            time.sleep(timeout_s)
            return 0
        local.polling = True
        try:
            return int(self._producer.poll(timeout_s))
        finally:
            local.polling = False

    def flush(self, timeout_s: float) -> int:
        """``producer.flush()``: the number of messages still undelivered after ``timeout_s``."""
        local = self._local
        if getattr(local, "polling", False):
            raise PublishError("cannot flush from inside a delivery callback", code="_REENTRANT_FLUSH")
        local.polling = True
        try:
            return int(self._producer.flush(timeout_s))
        finally:
            local.polling = False

    def stop(self) -> None:
        self._stopped = True
        if threading.current_thread() is not self._thread:  # close() from a callback on that thread
            self._thread.join()

    def _run(self) -> None:
        self._local.polling = True  # this thread only ever polls, so any nested poll is a callback's
        while not self._stopped:
            if self._inline:  # the app is publishing and serving reports itself: keep off the GIL
                self._inline = False
                time.sleep(self._back_off_s)
            else:
                self._producer.poll(self._idle_poll_s)
