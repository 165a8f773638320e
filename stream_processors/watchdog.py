"""A recovery that takes long logs where the fetch stands, so that a stall can be diagnosed from the log.

Seen in ``mc chaos join`` (``join_leave``, ``stream_processors/README.md`` cause 8): after two quick
rebalances a worker's recovery got no records of some changelog partitions for minutes (faust: "No
event received for active tp ... since recovery start"). faust's log says which partitions wait, not
why: the reason is in aiokafka's state (is the partition assigned, paused, positioned, awaiting an
offset reset, buffered and not consumed?) and in faust's (active, paused, buffered partitions, flow).
Reading that state from the event loop of the worker while the consumer thread changes it is racy; it
is only read, and only for a log line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka.errors import IllegalStateError

from stream_processors.fetch import aiokafka_assignment

__all__ = ["RecoveryWatchdog", "fetch_state", "silent_partitions"]

log = logging.getLogger(__name__)


def fetch_state(app: Any) -> str:
    """One line per interesting partition: faust's view and aiokafka's, for the partitions still recovering
    and every source or changelog partition assigned."""
    consumer = app.consumer
    recovery = app.tables.recovery
    lines = [
        f"flow_active={consumer.flow_active} flow_control={app.flow_control.is_active()} "
        f"rebalancing={app.rebalancing} in_recovery={app.in_recovery} generation={app.consumer_generation_id} "
        f"changelog_queue={app.tables.changelog_queue.qsize()} "
        f"active={sorted(map(_tp, consumer._active_partitions or ()))} "
        f"paused={sorted(map(_tp, consumer._paused_partitions))} "
        f"buffered={sorted(map(_tp, consumer._buffered_partitions))}"
    ]
    remaining = {
        tp: (recovery.active_offsets.get(tp), recovery.active_highwaters.get(tp))
        for tp in recovery.active_tps
        if _behind(recovery, tp)
    }
    lines.append("recovering: " + ", ".join(f"{_tp(tp)} at {o} of {h}" for tp, (o, h) in sorted(remaining.items())))
    inner = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    if inner is None:
        return "\n".join([*lines, "aiokafka: no consumer"])
    fetcher, subscription = inner._fetcher, inner._subscription
    assignment = aiokafka_assignment(inner)
    lines.append(
        f"aiokafka: reassignment_in_progress={subscription.reassignment_in_progress} "
        f"assignment_active={assignment.active if assignment else None} "
        f"in_flight_nodes={sorted(fetcher._in_flight)} pending_tasks={len(fetcher._pending_tasks)} "
        f"fetch_task_done={fetcher._fetch_task.done()} buffered_records={sorted(map(_tp, fetcher._records))}"
    )
    for tp in sorted(assignment.tps if assignment else (), key=_tp):
        state = assignment.state_value(tp)
        lines.append(
            f"  {_tp(tp)}: position={state._position} awaiting_reset={state.awaiting_reset} "
            f"paused={state.paused} committed_waiters={len(state._committed_futs)} "
            f"records={_records(fetcher._records.get(tp))} highwater={state.highwater}"
        )
    return "\n".join(lines)


def _tp(tp: Any) -> str:
    return f"{tp.topic}:{tp.partition}"


def _records(result: Any) -> str:
    if result is None:
        return "-"
    records = getattr(result, "_partition_records", None)
    if records is None:
        return type(result).__name__
    return f"next_fetch_offset={records.next_fetch_offset}"


class RecoveryWatchdog:
    """Ticked by a timer during recoveries: logs :func:`fetch_state` when a recovery has run for
    ``log_after_s`` (then every ``log_every_s``), and seeks a changelog partition that has received
    nothing since the recovery started back to where the recovery reads it from, once per recovery,
    after ``silent_s``: a backstop, logged as a warning with the fetch state (cause 8b in
    ``stream_processors/README.md``).

    The seek is safe for the table: the recovery applies a changelog record only when its offset is
    above the last one applied to the partition (``faust/tables/recovery.py``: ``_slurp_changelogs``),
    and the partition has had none in this recovery, so whichever copy of a record comes first is
    applied and the other is dropped, in offset order."""

    def __init__(
        self, app: Any, *, silent_s: float = 15.0, log_after_s: float = 20.0, log_every_s: float = 30.0
    ) -> None:
        self.app, self.silent_s = app, silent_s
        self.log_after_s, self.log_every_s = log_after_s, log_every_s
        self._logged_at = 0.0
        #: the recovery (its start time) whose silent partitions were sought back
        self._resought_for: float | None = None

    async def tick(self) -> None:
        recovery = self.app.tables.recovery
        started = recovery._recovery_started_at
        if not self.app.in_recovery or started is None:
            return
        now = time.monotonic()
        if now - started >= self.log_after_s and now - self._logged_at >= self.log_every_s:
            self._logged_at = now
            log.warning("recovery running for %.0f s; fetch state:\n%s", now - started, _state(self.app))
        # flow_active: the recovery has sought its partitions and is reading (the flow is stopped while a
        # rebalance runs and while the recovery builds and seeks its offsets)
        if now - started < self.silent_s or self._resought_for == started or not self.app.consumer.flow_active:
            return
        silent = silent_partitions(recovery)
        if not silent:
            return
        self._resought_for = started
        log.warning(
            "recovery: no record of %s since the recovery started %.0f s ago; seeking them to %s. Fetch state:\n%s",
            ", ".join(map(_tp, silent)),
            now - started,
            ", ".join(f"{_tp(tp)}@{offset}" for tp, offset in silent.items()),
            _state(self.app),
        )
        try:
            await self.app.consumer.seek_wait(silent)
        except IllegalStateError as exc:  # a rebalance took a partition away: the next recovery seeks
            log.info("recovery: could not seek %s (%r)", silent, exc)


def silent_partitions(recovery: Any) -> dict[Any, int]:
    """The active changelog partitions with records left to read that have received none since the
    recovery started, each with the offset the recovery seeks it to (``Recovery._seek_offsets``)."""
    received = recovery._active_events_received_at
    return {
        tp: max(_last_applied(recovery, tp), 0)
        for tp in recovery.active_tps
        if tp not in received and _behind(recovery, tp)
    }


def _last_applied(recovery: Any, tp: Any) -> int:
    offset = recovery.active_offsets.get(tp)
    return -1 if offset is None else int(offset)


def _behind(recovery: Any, tp: Any) -> bool:
    """Whether ``tp`` has changelog records left to apply (faust's highwaters are last offsets, end offset
    - 1, and its offsets the last applied: ``Recovery.active_remaining``)."""
    highwater = recovery.active_highwaters.get(tp)
    return highwater is not None and highwater > _last_applied(recovery, tp)


def _state(app: Any) -> str:
    try:
        return fetch_state(app)
    except Exception as exc:  # a diagnostic must not stop the worker
        return f"(could not read: {exc!r})"
