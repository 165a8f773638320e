"""faust's fetch loop without a task race per record.

faust's ``Consumer._drain_messages`` (``transport/consumer.py`` ~1170-1231) hands every fetched record to
the conductor with ``await self.wait_first(callback(message), self.suspend_flow.wait())``: four tasks
(the callback, the flow's suspension, the service's stop and crash events) and an ``asyncio.wait`` per
record, so that a callback blocked on a full buffer or a suspended flow is abandoned when a rebalance
suspends the flow. The callback almost never blocks (it decodes the raw record into an event and puts it
on the agent's queue), and the race cost more than the join itself (``stream_processors/README.md``,
"Throughput").

:func:`drain_messages` steps the callback by hand: when it finishes without suspending, which is the
case whenever the flow is active and the queue has room, nothing else was needed (``wait_first`` would
have run the same steps in the callback's task and returned it as the winner). When it suspends, the
rest of it races the flow's suspension exactly as in faust (:class:`_Rest` continues the started
coroutine inside ``wait_first``'s task). The read offsets and gaps of faust's loop are not kept: the
offset gate orders the records (:class:`~stream_processors.guards.OffsetGate`, which installs this loop).
:func:`getmany` fetches for a copy of the active partitions and gives back (seeks back to) what it
fetched and did not hand over, instead of dropping it.

:func:`install_lean_delivery` gives the conductor a leaner callback for the source topics' partitions
(raw bytes, one agent): faust's (``transport/conductor.py`` ~107-196) reads four settings per record through
its settings registry (the serializers, ``producer_threaded``) to decode bytes into the same bytes and to
wait for a producer buffer this worker never fills, which was two thirds of the callback's time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any, NamedTuple

__all__ = ["aiokafka_assignment", "drain_messages", "getmany", "install_lean_delivery"]

#: records handed over between two turns of the event loop (faust's loop yields every 100)
YIELD_EVERY = 100


async def drain_messages(consumer: Any, fetcher: Any) -> None:
    """``Consumer._drain_messages`` for the join worker (faust's structure, its error handling kept)."""
    from faust.transport.consumer import CONSUMER_FETCHING

    callback = consumer.callback
    # The conductor's callback takes its lock to find the partition's callback, per record; while the
    # lock is free (it is held only while the callbacks are rebuilt at a rebalance) the lookup is the same.
    conductor = consumer.app.topics
    by_partition, lookup_lock = conductor._tp_to_callback, conductor._tp_to_callback_lock
    client_only = consumer.app.client_only  # a client's conductor looks up partition 0 instead
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    set_flag, unset_flag = consumer.diag.set_flag, consumer.diag.unset_flag
    commit_every = consumer._commit_every
    since_yield = 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            records = getmany(consumer, timeout=1.0)
            await asyncio.sleep(0)  # as faust: getmany can return at once, again and again
            if consumer.should_stop:
                continue
            # closed here, also when a delivery raises: what it did not hand over is given back now, not by
            # a finaliser later (stream_processors.fetch.getmany)
            async with contextlib.aclosing(records):
                async for _tp, message in records:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    if commit_every is not None and consumer._n_acked >= commit_every:
                        consumer._n_acked = 0
                        await consumer.commit()
                    if client_only or lookup_lock.locked():
                        await _deliver(consumer, callback(message))
                    else:
                        await _deliver(consumer, by_partition[message.tp](message))
            unset_flag(CONSUMER_FETCHING)
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            consumer.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            consumer.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        consumer.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def getmany(consumer: Any, timeout: float) -> AsyncGenerator[tuple[Any, Any], None]:
    """``Consumer.getmany`` (``transport/consumer.py`` ~700-775) that gives back what it does not hand over.

    Three changes to faust's, each for a way records were consumed from aiokafka and never delivered:

    * The fetch is asked for a *copy* of the active partitions (:func:`_next_records`). faust passes its
      live set to the consumer thread, which drains aiokafka's buffer of every partition in it while it
      waits, and of *every* partition once the set is empty (aiokafka's ``fetched_records`` reads an empty
      set as "all"): a revocation empties it while a fetch waits.
    * Records not handed over (the flow stopped, the generation changed, the partition is not active
      any more) are given back: their partition is sought back to the first of them, unless something
      (a recovery, the offset gate) sought it since the fetch (:func:`_give_back`). faust drops them, so
      aiokafka's position stays past them. This was the recovery that received nothing
      (``stream_processors/README.md``, cause 8b): a changelog partition fetched from offset 0 by a
      request made before the recovery sought it to 0 (aiokafka keeps a response whose fetch offset
      equals the position), drained by a fetch that was waiting when the recovery sought, and dropped
      because the flow was not yet resumed: the position was past the whole small changelog.
    * No seek back to the committed offsets when the flow is stopped: it ran from this loop concurrently
      with the rebalance's recovery in the consumer thread. Every stopped flow ends with a recovery, which
      seeks the changelogs and the source partitions before the flow resumes (``tables/recovery.py``).
    """
    records, positions = await _next_records(consumer, timeout)
    generation_id = consumer.app.consumer_generation_id
    if not records:
        return
    handed: dict[Any, int] = dict.fromkeys(records, 0)  # records handed over, per partition (a prefix)
    stopped: set[Any] = set()  # partitions whose rest is given back
    try:
        if consumer.should_stop or not consumer.flow_active:
            return
        to_message = consumer._to_message
        buffered = consumer._buffered_partitions
        live = consumer._get_active_partitions()  # faust changes this set in place: the check below is live
        track_end = consumer.app.monitor.track_tp_end_offset
        for tp, record in consumer.scheduler.iterate(records):
            if not consumer.flow_active or consumer.app.consumer_generation_id != generation_id:
                break
            if tp in stopped:
                continue
            if tp in live or tp in buffered:
                track_end(tp, consumer.highwater(tp))
                message = to_message(tp, record)
                handed[tp] += 1
                yield tp, message
            else:
                stopped.add(tp)
    finally:
        left = {
            tp: (recs[handed[tp]].offset, positions[tp])
            for tp, recs in records.items()
            if handed[tp] < len(recs) and tp in positions
        }
        if left and not consumer.should_stop:
            await _give_back(consumer, left)


async def _next_records(consumer: Any, timeout: float) -> tuple[dict[Any, list[Any]], dict[Any, _After]]:
    """``Consumer._wait_next_records`` with a copy of the active partitions, and each fetched partition's
    position right after the fetch (read in the consumer thread, in the same step as the fetch)."""
    if not consumer.flow_active:
        await consumer.wait(consumer.can_resume_flow)
    try:
        consumer.not_waiting_next_records.set()  # as faust
        # a client-only app fetches every partition (None), as faust's
        active = None if consumer.app.client_only else frozenset(consumer._get_active_partitions())
        if active is not None and not active:
            await consumer.sleep(1)  # as faust: nothing to fetch, still give the loop a turn
            return {}, {}
        thread = consumer._thread
        result: tuple[dict[Any, list[Any]], dict[Any, _After]] = await thread.call_thread(
            _fetch, thread, thread._ensure_consumer(), active, timeout
        )
        return result
    finally:
        consumer.not_waiting_next_records.set()


class _After(NamedTuple):
    """Where a fetch left a partition: aiokafka's state of it (one per assignment) and its position."""

    state: Any
    position: int


async def _fetch(
    thread: Any, inner: Any, partitions: frozenset[Any] | None, timeout: float
) -> tuple[dict[Any, list[Any]], dict[Any, _After]]:
    """In the consumer thread: faust's fetch (``AIOKafkaConsumerThread._fetch_records``: its flow and
    closed checks), then where it left each partition, before anything else can run on the thread."""
    records = await thread._fetch_records(inner, partitions, timeout=timeout, max_records=inner._max_poll_records)
    assignment = aiokafka_assignment(inner)
    after = {}
    for tp in records:
        state = assignment.state_value(tp) if assignment is not None else None
        if state is not None and state.has_valid_position:
            after[tp] = _After(state, state.position)
    return records, after


async def _give_back(consumer: Any, left: dict[Any, tuple[int, _After]]) -> None:
    """Seek each partition of ``left`` (first offset not handed over, where the fetch left it) back to that
    offset, in the consumer thread, if it is still where the fetch left it: same assignment, same position
    (a seek since, to anywhere else, wins; one to the same position is undone harmlessly: the records
    below it are read again, and the gate and the recovery skip what they have)."""
    thread = consumer._thread
    try:
        await thread.call_thread(_seek_back, thread._ensure_consumer(), left)
    except Exception as exc:  # the consumer is stopping; a partition moved away: its next seek positions it
        consumer.log.info("fetch: could not give back %s (%r)", sorted(left), exc)


async def _seek_back(inner: Any, left: dict[Any, tuple[int, _After]]) -> None:
    assignment = aiokafka_assignment(inner)
    if assignment is None:
        return
    for tp, (first, after) in left.items():
        state = assignment.state_value(tp)
        if state is after.state and state.has_valid_position and state.position == after.position:
            inner.seek(tp, first)


def aiokafka_assignment(inner: Any) -> Any:
    """aiokafka's current assignment (its per-partition states), or None between assignments."""
    subscription = inner._subscription.subscription
    return None if subscription is None else subscription.assignment


async def _deliver(consumer: Any, delivery: Coroutine[Any, Any, None]) -> None:
    """Run ``delivery`` (the conductor's callback for one record) to its end, or race its rest against
    the flow's suspension as faust does once it has to wait."""
    try:
        first = delivery.send(None)
    except StopIteration:
        return  # done without waiting for anything
    await consumer.wait_first(_Rest(delivery, first), consumer.suspend_flow.wait())


class _Rest:
    """The rest of a coroutine that was stepped once by hand and yielded ``first``: awaiting this
    passes ``first`` to the task that awaits it, then goes on with the coroutine as ``await`` would
    (a cancellation thrown in while ``first`` is pending goes into the coroutine)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, None, Any]:
        coro, pending = self.coro, self.first
        while True:
            try:
                yield pending
            except BaseException as exc:  # thrown in by the task (a cancellation): the coroutine decides
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = coro.send(None)
            except StopIteration as stop:
                return stop.value


def install_lean_delivery(app: Any, source_topics: set[str]) -> None:
    """Build the conductor's callbacks of ``source_topics`` with :func:`_lean_callback` (others as faust does).

    Only for a partition read by one channel whose key and value are raw bytes: the event then carries
    the record's own key and value, as faust's raw codec would give them."""
    conductor = app.topics
    build_default = conductor._build_handler

    def build(tp: Any, channels: Any) -> Any:
        if tp.topic in source_topics and len(channels) == 1:
            (channel,) = channels
            if _raw_bytes(channel.schema):
                return _lean_callback(app, tp, channel)
        return build_default(tp, channels)

    conductor._build_handler = build


def _raw_bytes(schema: Any) -> bool:
    return bool(
        schema.key_type is bytes
        and schema.value_type is bytes
        and schema.key_serializer == "raw"
        and schema.value_serializer == "raw"
    )


def _lean_callback(app: Any, tp: Any, channel: Any) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """What faust's conductor does with a record of ``tp`` for its one raw channel, its settings read once.

    Not waited for: faust's producer buffer (``wait_until_producer_ebb``), which only holds writes made
    through a table's mapping API; this worker writes its tables with its own sink
    (:class:`~stream_processors.batching.BatchSink`), so the buffer stays empty."""
    consumer = app.consumer
    acquire_flow_control = app.flow_control.acquire
    on_topic_buffer_full = app.sensors.on_topic_buffer_full
    make_event = app.conf.Event
    queue = channel.queue

    def on_pressure_high() -> None:  # as faust: stop fetching the partition while its buffer is nearly full
        on_topic_buffer_full(tp)
        consumer.on_buffer_full(tp)

    def on_pressure_drop() -> None:
        consumer.on_buffer_drop(tp)

    async def on_message(message: Any) -> None:
        await acquire_flow_control()
        message.incref(1)
        event = make_event(app, message.key, message.value, message.headers, message)
        if queue.full():
            on_topic_buffer_full(tp)
            await channel.put(event)
        else:
            queue.put_nowait_enhanced(event, on_pressure_high=on_pressure_high, on_pressure_drop=on_pressure_drop)

    return on_message
