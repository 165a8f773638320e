"""Guards against three ways faust-streaming 0.15.3 can commit an offset past work that is not durable.

Found reading its source for issue #11 (file:line of faust 0.15.3):

* **Acks of records the agent never got.** At a rebalance the stream skips events of an older
  consumer generation, or read while flow control is suspended, and acks them all the same
  (``streams.py`` ~1286-1338). After a revocation the consumer has forgotten its committed offsets
  (``transport/consumer.py`` ~657-662), so ``_new_offset`` skips its gap check (``if committed_offset:``,
  ~1139) and a stale ack at offset *o* can commit *o+1* over records that were dropped from the
  stream's buffer unprocessed. :func:`refuse_stale_acks` makes such an ack release the message
  without recording its offset: the record stays uncommitted and is read again (at least once).
* **Records out of order around a rebalance.** To read the changelogs after an assignment faust
  resumes its flow control (``tables/recovery.py`` ~447-452) while the source partitions' records are
  already fetched, so the agent gets records before the state is recovered; faust seeks back to the
  committed offsets only when recovery ends (~319), records fetched before that seek can still arrive
  after it, and the fetch loop then acks the distance to them as a gap without delivering it
  (``_add_gap``, ~1215) and drops the records the seek fetches, being below its read offset (~1209).
  Seen in ``mc chaos join``: offsets handled twice in one generation, 1 to 30 back; predictions
  committed that no worker had joined. :class:`OffsetGate` admits a source partition's records to the
  agent strictly in offset order from the offset it was last sought to, the fetch loop keeps no read
  offsets (so it drops nothing and acks no gap: our source topics have none, being neither
  transactional nor compacted), and a record the gate skips has its ack refused (:func:`skip_unprocessed`).
* **Attachments of revoked partitions.** faust drops a revoked partition's acked offsets before its
  revoke-time commit but never its attached messages (``app/_attached.py``): they are published at
  the next commit of that partition on this worker, possibly long after another worker owned it,
  carrying stale changelog records. Their offsets were never committed, so the next owner processes
  those records again: :func:`drop_revoked_attachments` discards them at the revocation.
* **A commit after a failed send.** A commit waits for its attachments with ``asyncio.wait``, which
  does not raise a failed send (``mode`` ``Service.wait_many``, ``topics.py`` ~470), and commits all
  the same. :func:`fail_stop` is a done-callback for every send of the worker: a failed send ends the
  process before the commit (callbacks run in the order they were added; the commit's wait adds its
  own later), so the record is read again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from typing import Any

from aiokafka.errors import IllegalStateError

__all__ = [
    "EXIT_SEND_FAILED",
    "OffsetGate",
    "drop_revoked_attachments",
    "fail_stop",
    "refuse_stale_acks",
    "skip_unprocessed",
    "stop_worker",
]

log = logging.getLogger(__name__)

#: exit status of a worker that stopped because a send (or the handling of a batch) failed (EX_SOFTWARE)
EXIT_SEND_FAILED = 70


#: messages the agent saw but did not handle: their acks must not count
_unprocessed: weakref.WeakSet[Any] = weakref.WeakSet()


def skip_unprocessed(message: Any) -> None:
    """The agent skips ``message``: its ack (which faust's stream sends all the same) records no offset."""
    _unprocessed.add(message)


def refuse_stale_acks() -> None:
    """Patch faust's consumer (process-wide, idempotent): no offset recorded for skipped records."""
    import faust.streams
    from faust.transport import consumer as fc
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    # The Cython stream iterator inlines Consumer.ack (faust/_cython/streams.pyx: after): it would bypass
    # the guard. Seen: 1,003 records skipped while rebalancing were committed all the same, 273 lost.
    faust.streams._CStreamIterator = None  # type: ignore[attr-defined]
    original = fc.Consumer.ack
    if getattr(original, "_mc_guard", False):
        return

    def ack(self: Any, message: Any) -> bool:
        app = self.app
        if (
            message in _unprocessed
            or message.generation_id != app.consumer_generation_id
            or not app.flow_control.is_active()
        ):
            with ack_lock:
                if not message.acked:
                    message.acked = True  # released (wait_empty must not wait for it) but not committed
                    self._unacked_messages.discard(message)
                notify(self._waiting_for_ack)
            return False
        result: bool = original(self, message)
        return result

    ack._mc_guard = True  # type: ignore[attr-defined]
    fc.Consumer.ack = ack  # type: ignore[method-assign]


class OffsetGate:
    """Admits each source partition's records to the agent in offset order, from where it was sought.

    After every seek to the committed offsets (faust's ``perform_seek``, patched by :meth:`install`)
    the next admissible offset of a partition is its committed offset (the log start when nothing was
    committed). The consumer fetches from there in order; any other record (one fetched before the
    seek, below or above the turn) is skipped: the fetch from the seek brings it again in its turn.
    A record of the current generation that arrives before the seek of its assignment is known (the
    state is still being recovered, or faust's seek is being awaited: the flow is suspended then, and
    the fetch from the seek already delivers) is *held* until it is known, then judged like the others;
    it is skipped if a revocation starts meanwhile (faust's ``stop_flow``, patched to count, comes before
    it waits for the agent to finish) or the generation changes. Holding, not skipping, is what keeps a
    partition live: a record at the committed offset skipped here would never be fetched again. For
    this to hold, the fetch loop must not drop records below the last offset it read nor ack a "gap"
    above it: :meth:`install` replaces faust's loop with :func:`stream_processors.fetch.drain_messages`,
    which keeps no read offsets and acks no gaps.
    """

    #: how often a held record looks whether its assignment's seek is known (only during a rebalance)
    poll_s = 0.02
    #: records ahead of a partition's turn for this long without the turn's record: sought back to it
    reseek_after_s = 2.0
    #: ... and for this long: logged as a warning
    stall_warn_s = 5.0

    def __init__(self, app: Any, source_topics: set[str]) -> None:
        self.app = app
        self.source_topics = source_topics
        self.expected: dict[Any, int] = {}
        #: held by each seek and the turns it sets (see :meth:`install`)
        self.seeking = asyncio.Lock()
        #: revocations started (faust's ``Consumer.stop_flow`` calls)
        self.stops = 0
        #: (partition, expected offset) -> when a record was first skipped waiting for it
        self._skips: dict[tuple[Any, int], float] = {}
        self._warned: set[tuple[Any, int]] = set()
        #: turns this gate has sought a partition back to (once each)
        self._resought: set[tuple[Any, int]] = set()

    def install(self) -> None:
        from faust.transport import consumer as fc

        from stream_processors.fetch import drain_messages

        self.app._mc_offset_gate = self
        if getattr(fc.Consumer.perform_seek, "_mc_guard", False):
            return

        async def perform_seek(consumer: Any) -> None:
            gate = getattr(consumer.app, "_mc_offset_gate", None)
            if gate is None:
                await original_seek(consumer)
                return
            # One seek at a time, the gate's turns set with it: the recovery's seeks and the gate's own
            # seek back (:meth:`_reseek`) must not interleave (one committed-offset request per partition
            # each), or a partition could be sought by one and its turn set by the other: the turn would
            # lie behind the fetch position and every record come ahead of it. (faust's fetch loop also
            # sought from ``getmany``; the worker's loop does not: stream_processors.fetch.getmany.)
            async with gate.seeking:
                await original_seek(consumer)
                await gate.on_sought(consumer)

        def stop_flow(consumer: Any) -> None:
            gate = getattr(consumer.app, "_mc_offset_gate", None)
            if gate is not None:
                gate.stops += 1
            original_stop_flow(consumer)

        original_seek = fc.Consumer.perform_seek
        original_stop_flow = fc.Consumer.stop_flow
        perform_seek._mc_guard = True  # type: ignore[attr-defined]
        fc.Consumer.perform_seek = perform_seek  # type: ignore[method-assign,assignment]
        # faust's loop without its read offsets, gaps and per-record task race (stream_processors.fetch)
        fc.Consumer._drain_messages = drain_messages  # type: ignore[method-assign,assignment]
        fc.Consumer.stop_flow = stop_flow  # type: ignore[method-assign,assignment]

    def on_revoked(self) -> None:
        self.expected.clear()
        self._skips.clear()
        self._warned.clear()
        self._resought.clear()

    async def on_sought(self, consumer: Any) -> None:
        """Each source partition's turn after a seek: its committed offset, or its log start when nothing
        is committed. aiokafka does not seek a partition without a committed offset (its position stays
        where its fetches left it), so such a partition is sought to its log start here."""
        tps = [tp for tp in consumer.assignment() if tp.topic in self.source_topics]
        committed = {tp: consumer._committed_offset.get(tp) for tp in tps}
        unknown = [tp for tp, offset in committed.items() if not offset]  # None: nothing committed, or 0
        earliest = await consumer.earliest_offsets(*unknown) if unknown else {}
        expected = {tp: committed[tp] or earliest.get(tp, 0) or 0 for tp in tps}
        if unknown:
            try:
                await consumer.seek_wait({tp: expected[tp] for tp in unknown})
            except IllegalStateError as exc:  # a rebalance took a partition away; its next assignment seeks
                log.info("gate: could not seek %s (%r)", unknown, exc)
        self.expected = expected
        log.info(
            "gate: sought (generation %s): %s",
            self.app.consumer_generation_id,
            ", ".join(f"{tp.topic}:{tp.partition}@{o}" for tp, o in sorted(self.expected.items())),
        )

    async def admit(self, message: Any) -> bool:
        """Whether the agent handles ``message`` now (else it is skipped and read again later).

        An earlier version skipped the records that came before the seek was known and had the timer
        seek again afterwards; that seek raced the next rebalance (``IllegalStateError: No current
        assignment``, a crashed worker) or, queued on the consumer thread, stalled a table's recovery
        for minutes: both seen in ``mc chaos join`` on a loaded machine."""
        app, stops = self.app, self.stops
        while (expected := self.expected.get(message.tp)) is None:
            if message.generation_id != app.consumer_generation_id or self.stops != stops:
                return False  # a revocation started: faust waits for this record to be released
            await asyncio.sleep(self.poll_s)
        if message.generation_id != app.consumer_generation_id:
            return False
        if message.offset != expected:
            waited = self._note_skip(message.tp, expected, message.offset)
            if (
                message.offset > expected
                and waited >= self.reseek_after_s
                and (message.tp, expected) not in self._resought
                and not app.rebalancing
                and self.stops == stops
            ):
                await self._reseek(message.tp, expected)
            return False
        self.expected[message.tp] = expected + 1
        return True

    async def _reseek(self, tp: Any, offset: int) -> None:
        """Seek ``tp`` back to its turn, which the fetch position has passed (once per turn): a backstop.

        Seen in ``mc chaos join`` (``join_leave``, two rebalances within ~3 s): the records at a turn were
        fetched and then cleared from the agent's queue by faust's flow control (no longer: see
        :func:`~stream_processors.batching.consume_batches`), and the partition's records came from further
        on, never from the turn: it stalled for good. Records between the turn and the position are then
        handled again (replays: at least once)."""
        self._resought.add((tp, offset))
        async with self.seeking:
            if self.expected.get(tp) != offset:  # a seek set a new turn meanwhile
                return
            try:
                await self.app.consumer.seek_wait({tp: offset})
            except IllegalStateError as exc:  # a rebalance took it away; its next assignment seeks
                log.info("gate: could not seek %s:%d back to %d (%r)", tp.topic, tp.partition, offset, exc)
                return
        log.warning("gate: %s:%d sought back to its turn %d: the fetch had passed it", tp.topic, tp.partition, offset)

    def _note_skip(self, tp: Any, expected: int, offset: int) -> float:
        """Log the first skip of a partition's turn (one line per partition and seek); warn when records
        ahead of the turn keep coming for ``stall_warn_s`` while the turn's own record does not. Returns
        how long the turn has waited (since its first skip)."""
        now = time.monotonic()
        first = self._skips.get((tp, expected))
        if first is None:
            self._skips[(tp, expected)] = now
            log.info("gate: %s:%d expects offset %d, skipped %d", tp.topic, tp.partition, expected, offset)
            return 0.0
        if offset > expected and now - first > self.stall_warn_s and (tp, expected) not in self._warned:
            self._warned.add((tp, expected))
            log.warning(
                "gate: %s:%d has waited %.1f s for offset %d while later records arrive (now %d)",
                tp.topic,
                tp.partition,
                now - first,
                expected,
                offset,
            )
        return now - first


def drop_revoked_attachments(app: Any) -> None:
    """At every revocation, forget the attached messages of the revoked partitions."""

    @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator]
    async def _drop(sender: Any, revoked: Any, **_: Any) -> None:
        pending = app._attachments._pending
        dropped = sum(len(pending.pop(tp, ())) for tp in revoked)
        if dropped:
            log.info("dropped %d attached messages of %d revoked partitions", dropped, len(revoked))


def fail_stop(fut: Any) -> None:
    """Done-callback of a send: a send that failed ends the worker before anything commits past it."""
    if fut.cancelled() or fut.exception() is None:
        return
    log.critical("a send failed (%r): stopping so that its record is processed again", fut.exception())
    logging.shutdown()
    os._exit(EXIT_SEND_FAILED)


def stop_worker(reason: str) -> None:
    """End the worker now (exit 70), before anything commits past work that did not finish."""
    log.critical("%s: stopping so that its records are processed again", reason)
    logging.shutdown()
    os._exit(EXIT_SEND_FAILED)
