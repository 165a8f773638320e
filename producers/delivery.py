"""A slim delivery future: one per published event, so it must cost next to nothing.

``concurrent.futures.Future`` builds a ``threading.Condition`` per instance (~5 µs), a third of what
a whole publish costs. Ours allocates a ``threading.Event`` only when somebody actually waits.

The future is itself the message's ``on_delivery`` callable (``__call__``), so a publish allocates
one object the garbage collector tracks, not two or three (a bound method or closure per event, and
one for the failure hook). In a burst, librdkafka holds tens of thousands of these until the broker
acknowledges them, so they survive young collections and are promoted, and enough promotions set off
a collection of the application's whole heap; the benchmark measured 195 -> 65 young collections per
50,000 events, and the full collections (~50 ms each there) went from every run to about every other.

Settling takes no lock. The thread that serves the report stores the outcome, sets ``_done``, then
looks for a waiter and callbacks; a waiter is published (under a lock) before its creator re-checks
``_done``, so one of the two always sees the other (the GIL orders these steps). Callbacks are
drained with ``list.pop``, which is atomic, so each runs exactly once even if it is added while the
future settles; one that raises is logged, never raised into the thread that polls. Callbacks run on
whichever thread serves reports: the publisher's poll thread, or an app thread inside ``publish()``
or ``flush()`` (see polling.py). ``as_concurrent()`` adapts the future for ``asyncio.wrap_future``
and other code that wants the standard type.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from schemas.errors import DeliveryError

__all__ = ["Delivery", "DeliveryFuture"]

_log = logging.getLogger(__name__)
_lock = threading.Lock()  # guards creating a waiter or the callback list; never taken when settling

Failure = tuple[str, bytes | None, str]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker stored an event."""

    topic: str
    partition: int
    offset: int


class DeliveryFuture:
    """The outcome of one publish: a :class:`Delivery`, or a :class:`DeliveryError`."""

    __slots__ = ("_callbacks", "_done", "_error", "_key", "_offset", "_on_failure", "_partition", "_topic", "_waiter")

    def __init__(self, topic: str, key: bytes | None, on_failure: Callable[[Failure], None]) -> None:
        self._topic = topic
        self._key = key
        self._on_failure = on_failure
        self._done = False
        self._error: DeliveryError | None = None
        self._waiter: threading.Event | None = None
        self._callbacks: list[Callable[[DeliveryFuture], Any]] | None = None
        # _partition and _offset are set when the report arrives; nothing reads them before _done.

    # librdkafka's on_delivery(err, msg), run by whichever thread polls the producer; apps never call it
    def __call__(self, err: Any, msg: Any) -> None:
        if err is None:
            self._partition = msg.partition()
            self._offset = msg.offset()
        else:
            self._settle_failed(err)
        self._done = True
        if self._waiter is not None:
            self._waiter.set()
        if self._callbacks is not None:
            self._run_callbacks()

    def _settle_failed(self, err: Any) -> None:
        failure = (self._topic, self._key, str(err))
        self._partition = self._offset = -1
        self._error = DeliveryError(
            f"delivery to {self._topic} failed: {err.str()}",
            code=err.name(),
            description=err.str(),
            failures=[failure],
        )
        self._on_failure(failure)

    def _run_callbacks(self) -> None:
        callbacks = self._callbacks
        while callbacks:
            try:
                fn = callbacks.pop(0)  # atomic: a callback added during settlement runs once, here or there
            except IndexError:
                return
            try:
                fn(self)
            except Exception:  # as concurrent.futures does: one bad callback must not stop the poll thread
                _log.exception("delivery callback %r failed", fn)

    def done(self) -> bool:
        return self._done

    def result(self, timeout: float | None = None) -> Delivery:
        """The delivery, waiting up to ``timeout`` s; raises :class:`DeliveryError` if it failed."""
        if not self._done:
            with _lock:
                waiter = self._waiter
                if waiter is None:
                    waiter = self._waiter = threading.Event()
            # re-check after publishing the waiter: a report that came in between did not see it
            if not self._done and not waiter.wait(timeout):
                raise TimeoutError(f"no delivery report within {timeout} s")
        if self._error is not None:
            raise self._error
        return Delivery(self._topic, self._partition, self._offset)

    def exception(self, timeout: float | None = None) -> DeliveryError | None:
        try:
            self.result(timeout)
        except DeliveryError as exc:
            return exc
        return None

    def add_done_callback(self, fn: Callable[[DeliveryFuture], Any]) -> None:
        """Call ``fn(self)`` once settled (on the thread serving reports), or at once if already settled."""
        with _lock:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(fn)
        if self._done:  # settled meanwhile: drain here (pop makes sure nothing runs twice)
            self._run_callbacks()

    def as_concurrent(self) -> Future[Delivery]:
        """A standard ``concurrent.futures.Future`` settled with this one (for ``asyncio.wrap_future``)."""
        fut: Future[Delivery] = Future()

        def settle(me: DeliveryFuture) -> None:
            if not fut.set_running_or_notify_cancel():
                return  # cancelled by its awaiter (asyncio.wait_for timed out, say)
            if me._error is not None:
                fut.set_exception(me._error)
            else:
                fut.set_result(Delivery(me._topic, me._partition, me._offset))

        self.add_done_callback(settle)
        return fut
