"""The worker's batch path: records taken from faust's queue in batches, outputs sent as record batches.

faust's stream iterator spends an event-loop turn, a context variable, sensors and an ack per record,
and every send made while handling a record goes through faust's topic layer and is *attached* to the
record's offset (a heap entry, a future, a publish at commit time). Those per-record steps were most
of the worker's time (``stream_processors/README.md``, "Throughput"). Here:

* :func:`consume_batches` takes every event waiting in the agent's queue (up to ``max_records``) at
  once, applies per record what faust's iterator applies (skip records of an old generation or read
  while the flow is suspended, track the message, the offset gate), has the processor handle the
  batch, and only then acks the batch's records.
* :class:`BatchSink` appends every output of a batch (examples, dead letters, changelog records) to
  one aiokafka record batch per topic-partition and :meth:`BatchSink.flush` sends them and waits for
  every one to be acknowledged by the broker (acks=all) before the processor returns.

Why this keeps the guarantees of faust's attach-and-commit (issue #11): an offset is committed only
once acked, and a record is acked only after every output of its batch is durable, which is stronger
than "published before the next commit". A failed batch send ends the worker before any ack
(:func:`~stream_processors.guards.fail_stop` runs before the waiter's callback). The guards still
apply: acks of skipped or stale records record no offset (:func:`~stream_processors.guards.refuse_stale_acks`),
and the gate admits each partition's records in offset order. Changelog records are sent with their
batch rather than held until the next commit, so a revoked worker has nothing attached to publish
late; a state it wrote for records it never acked is merged at the next recovery like the state of
a replay (:meth:`~stream_processors.join.JoinState.merge`): what it says was emitted was sent with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from stream_processors.guards import OffsetGate, fail_stop, skip_unprocessed, stop_worker
from stream_processors.tables import StoreWrites, store_get

__all__ = ["BatchSink", "SourceRecord", "consume_batches"]

log = logging.getLogger(__name__)

#: topic, partition, offset, timestamp (s), key, value of a source record
SourceRecord = tuple[str, int, int, float | None, bytes | None, bytes | None]


async def consume_batches(
    stream: Any,
    gate: OffsetGate,
    handle_batch: Callable[[Sequence[SourceRecord]], Awaitable[None]],
    *,
    max_records: int,
    on_skipped: Callable[[], None] | None = None,
) -> None:
    """The agent's loop: what faust's stream iterator does per record (``streams.py: _py_aiter``), per batch."""
    from faust.types import EventT

    app = stream.app
    await stream.maybe_start()
    channel = stream.channel
    queue = channel.queue
    # faust clears the agent's queue whenever its flow control resumes, and a recovery resumes it after it
    # has sought the source partitions to their committed offsets, while the fetch from there is already
    # being delivered: records at the committed offsets were cleared, fetched no more, and the gate waited
    # for them for good (seen in `mc chaos join`: turn 239, records from 247 on). The queue is not cleared
    # here: what it holds from an older generation or from before a seek is skipped by the checks below
    # and by the gate, and read again from the seek (stream_processors/README.md, cause 8).
    app.flow_control._queues.discard(queue)
    consumer = app.consumer
    flow_control = app.flow_control
    acking_topics = app.topics.acking_topics
    while not stream.should_stop:
        try:
            events = [await channel.__anext__()]
        except StopAsyncIteration:  # the channel ends (the worker stops), as faust's iterator returns then
            return
        while len(events) < max_records and not queue.empty():
            events.append(queue.get_nowait())
        records: list[SourceRecord] = []
        try:
            for event in events:
                if not isinstance(event, EventT):
                    raise TypeError(f"the join agent's channel delivered {type(event).__name__}, not an event")
                msg = event.message
                if not flow_control.is_active() or msg.generation_id != app.consumer_generation_id:
                    continue  # faust skips it (its ack records no offset: guards.refuse_stale_acks)
                if msg.topic in acking_topics and not msg.tracked:
                    msg.tracked = True
                    consumer.track_message(msg)
                if not await gate.admit(msg):  # out of order around a rebalance: see guards.OffsetGate
                    skip_unprocessed(msg)
                    if on_skipped is not None:
                        on_skipped()
                    continue
                records.append((msg.topic, msg.partition, msg.offset, msg.timestamp, msg.key, msg.value))
            if records:
                await handle_batch(records)
        except BaseException as exc:
            # Not handled to the end: no offset of this batch may be committed (faust's iterator would
            # ack the current record all the same). Released, so that a revocation does not wait for them.
            for event in events:
                skip_unprocessed(event.message)
                event.ack()
            if isinstance(exc, Exception):
                stop_worker(f"the join failed on a batch of {len(records)} records: {exc!r}")
            raise
        # Every output of the batch is durable (handle_batch waited for them): the offsets may commit.
        for event in events:
            event.ack()


class BatchSink:
    """The processor's :class:`~stream_processors.worker.Sink` on the batch path: outputs are appended to
    one aiokafka record batch per topic-partition; :meth:`flush` sends them all and waits for the broker."""

    #: largest record batch built (bytes); a record larger than this still goes, alone in its batch
    batch_bytes = 512 * 1024
    #: most (topic, key) -> partition answers remembered; the cache only saves a hash per record
    partition_cache_size = 65_536

    def __init__(self, app: Any, *, examples: str, dead_letters: str, join_table: Any) -> None:
        self.app, self.examples, self.dead_letters, self.join_table = app, examples, dead_letters, join_table
        self._open: dict[tuple[str, int], Any] = {}
        self._full: list[tuple[str, int, Any]] = []
        self._partition_of: dict[tuple[str, bytes], int] = {}
        # The agent and the expiry timer share the sink; a flush must not return before everything
        # appended before it is durable, including records another task's flush took but has not sent.
        self._flushing = asyncio.Lock()
        self._writes = StoreWrites()

    def _producer(self) -> Any:
        return self.app.producer._producer  # the aiokafka producer faust started (and flushes before commits)

    async def _partition(self, topic: str, key: bytes | None) -> int:
        """The partition aiokafka's default partitioner (murmur2, as the contract's producers) gives ``key``."""
        if key is not None and (topic, key) in self._partition_of:
            return self._partition_of[(topic, key)]
        producer = self._producer()
        await producer.client._wait_on_metadata(topic)
        partition: int = producer._partition(topic, None, key, None, key, None)
        if key is not None:
            if len(self._partition_of) >= self.partition_cache_size:  # keys are prediction ids: never-ending
                self._partition_of.clear()
            self._partition_of[(topic, key)] = partition
        return partition

    def _append(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        tp = (topic, partition)
        builder = self._open.get(tp)
        if builder is None:
            builder = self._open[tp] = self._new_builder()
        if builder.append(timestamp=None, key=key, value=value) is None:  # full: close it, start another
            self._full.append((topic, partition, builder))
            builder = self._open[tp] = self._new_builder()
            builder.append(timestamp=None, key=key, value=value)  # the first record always fits

    def _new_builder(self) -> Any:
        from aiokafka.producer.message_accumulator import BatchBuilder

        producer = self._producer()
        # the compression attribute the producer gave its accumulator (an int; the producer keeps the name)
        return BatchBuilder(self.batch_bytes, producer._message_accumulator._compression_type)

    # -- the Sink protocol --------------------------------------------------------------------------

    async def example(self, key: bytes, value: bytes) -> None:
        self._append(self.examples, await self._partition(self.examples, key), key, value)

    async def dead_letter(self, key: bytes | None, value: bytes) -> None:
        self._append(self.dead_letters, await self._partition(self.dead_letters, key), key, value)

    async def put_state(self, partition: int, key: bytes, value: bytes) -> None:
        self.put_table(self.join_table, partition, key, value)

    async def delete_state(self, partition: int, key: bytes) -> None:
        self._writes.apply()
        if store_get(self.join_table, partition, key) is not None:
            self._writes.delete(self.join_table, partition, key)
            self._append(self._changelog(self.join_table), partition, key, None)

    def put_table(self, table: Any, partition: int, key: bytes, value: bytes) -> None:
        """Write ``table``'s store (at the next flush, before it waits) and its changelog (partition = the
        source partition) with the batch."""
        self._writes.put(table, partition, key, value)
        self._append(self._changelog(table), partition, key, value)

    def _changelog(self, table: Any) -> str:
        name: str = table.changelog_topic.get_topic_name()
        return name

    async def flush(self) -> None:
        """Send every batch built so far and wait until the broker has them all (a failure stops the worker)."""
        self._writes.apply()  # the store first, before anything waits: the expiry timer reads it
        async with self._flushing:
            batches = [*self._full, *((t, p, b) for (t, p), b in self._open.items())]
            self._full, self._open = [], {}
            if not batches:
                return
            producer = self._producer()
            futures = []
            for topic, partition, builder in batches:
                builder.close()
                fut = await producer.send_batch(builder, topic, partition=partition)
                fut.add_done_callback(fail_stop)
                futures.append(fut)
            await asyncio.gather(*futures)
