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

:func:`install_lean_delivery` gives the conductor a leaner callback for the source topics' partitions
(raw bytes, one agent): faust's (``transport/conductor.py`` ~107-196) reads four settings per record through
its settings registry (the serializers, ``producer_threaded``) to decode bytes into the same bytes and to
wait for a producer buffer this worker never fills, which was two thirds of the callback's time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any

__all__ = ["drain_messages", "getmany", "install_lean_delivery"]

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
            records: AsyncIterator[tuple[Any, Any]] = getmany(consumer, timeout=1.0)
            await asyncio.sleep(0)  # as faust: getmany can return at once, again and again
            if not consumer.should_stop:
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


async def getmany(consumer: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
    """``Consumer.getmany`` (``transport/consumer.py`` ~700-775) without its seek when the flow is stopped.

    faust drops what a fetch brought while the flow is stopped (a rebalance is under way) and then seeks
    every assigned partition back to its committed offset, from the fetch loop, concurrently with the
    rebalance's recovery (its changelog seeks, its seek of the source partitions) in the consumer thread.
    Two seeks that interleave can leave a source partition positioned by one and its turn in the offset
    gate set by the other. The seek is not needed: every stopped flow ends with a recovery, which seeks the
    changelogs to where it reads from and the source partitions to their committed offsets before the flow
    resumes (``tables/recovery.py``), so what was dropped here is fetched again. See
    ``stream_processors/README.md``, cause 8, for the stall this was looked at for (not fixed by it)."""
    records, active_partitions = await consumer._wait_next_records(timeout)
    generation_id = consumer.app.consumer_generation_id
    if records is None or consumer.should_stop or not consumer.flow_active:
        return
    to_message = consumer._to_message
    buffered = consumer._buffered_partitions
    track_end = consumer.app.monitor.track_tp_end_offset
    for tp, record in consumer.scheduler.iterate(records):
        if not consumer.flow_active or consumer.app.consumer_generation_id != generation_id:
            break
        if active_partitions is None or tp in active_partitions or tp in buffered:
            track_end(tp, consumer.highwater(tp))
            yield tp, to_message(tp, record)


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
