"""The worker's fetch loop hand-off (``stream_processors/fetch.py``): a conductor callback that does not
wait is run without a task race; one that waits races the flow's suspension with mode's own
``wait_first``, exactly as faust's loop; the lean conductor callback delivers what faust's would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mode import Service

from stream_processors.fetch import _deliver, _lean_callback, _raw_bytes, getmany


class _Consumer(Service):
    """What ``_deliver`` uses of faust's consumer: mode's ``wait_first`` and the flow's suspension."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.races = 0

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        self.races += 1
        return await super().wait_first(*coros, timeout=timeout)


def test_a_callback_that_does_not_wait_runs_without_a_race() -> None:
    asyncio.run(_a_callback_that_does_not_wait_runs_without_a_race())


async def _a_callback_that_does_not_wait_runs_without_a_race() -> None:
    consumer, ran = _Consumer(), []

    async def callback() -> None:
        ran.append(1)

    await _deliver(consumer, callback())
    assert ran == [1] and consumer.races == 0


def test_a_callback_that_waits_goes_on_in_the_race_and_finishes() -> None:
    asyncio.run(_a_callback_that_waits_goes_on_in_the_race_and_finishes())


async def _a_callback_that_waits_goes_on_in_the_race_and_finishes() -> None:
    consumer, steps = _Consumer(), []
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def callback() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)  # a second suspension, resumed by the task
        steps.append("after")

    delivery = asyncio.ensure_future(_deliver(consumer, callback()))
    await asyncio.sleep(0.01)
    assert steps == ["before"] and consumer.races == 1 and not delivery.done()
    gate.set_result("value")
    await asyncio.wait_for(delivery, 1)
    assert steps == ["before", "value", "after"]


def test_a_waiting_callback_is_abandoned_when_the_flow_is_suspended() -> None:
    asyncio.run(_a_waiting_callback_is_abandoned_when_the_flow_is_suspended())


async def _a_waiting_callback_is_abandoned_when_the_flow_is_suspended() -> None:
    consumer, seen = _Consumer(), []
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def callback() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")  # the coroutine itself gets the cancellation, as under faust
            raise

    delivery = asyncio.ensure_future(_deliver(consumer, callback()))
    await asyncio.sleep(0.01)
    consumer.suspend_flow.set()
    await asyncio.wait_for(delivery, 1)
    await asyncio.sleep(0)
    assert seen == ["cancelled"]


@pytest.mark.parametrize("fail_after_waiting", [False, True])
def test_a_failing_callback_raises_to_the_loop(fail_after_waiting: bool) -> None:
    asyncio.run(_a_failing_callback_raises_to_the_loop(fail_after_waiting))


async def _a_failing_callback_raises_to_the_loop(fail_after_waiting: bool) -> None:
    consumer = _Consumer()

    async def callback() -> None:
        if fail_after_waiting:
            await asyncio.sleep(0.001)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await _deliver(consumer, callback())


def test_only_raw_bytes_channels_get_the_lean_callback() -> None:
    import faust

    raw: Any = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    assert _raw_bytes(raw)
    assert not _raw_bytes(faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="json"))
    assert not _raw_bytes(faust.Schema(key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"))


class _Queue:
    def __init__(self, full: bool) -> None:
        self._full, self.items = full, list[Any]()

    def full(self) -> bool:
        return self._full

    def put_nowait_enhanced(self, item: Any, *, on_pressure_high: Any, on_pressure_drop: Any) -> None:
        self.items.append(item)


class _Channel:
    def __init__(self, full: bool) -> None:
        self.queue, self.put_items = _Queue(full), list[Any]()

    async def put(self, item: Any) -> None:
        self.put_items.append(item)


@pytest.mark.parametrize("full", [False, True])
def test_the_lean_callback_delivers_the_record_as_an_event(full: bool) -> None:
    asyncio.run(_the_lean_callback_delivers_the_record_as_an_event(full))


async def _the_lean_callback_delivers_the_record_as_an_event(full: bool) -> None:
    import faust
    from faust.types import TP, Message

    app = faust.App("fetch-test", autodiscover=False)
    app.flow_control.resume()  # a worker's flow is active between rebalances
    tp = TP("t", 0)
    channel = _Channel(full)
    message = Message("t", 0, 7, 0.0, 0, None, b"key", b"value", None, tp=tp)
    await _lean_callback(app, tp, channel)(message)
    (event,) = channel.put_items if full else channel.queue.items
    assert (event.key, event.value, event.message) == (b"key", b"value", message)
    assert message.refcount == 1  # acked once by the agent, as faust's conductor counts it


class _Inner:
    """aiokafka's consumer as the fetch sees it: a buffer of fetched records and a position per partition."""

    _max_poll_records = 500

    def __init__(self, consumer: _Fetching, records: dict[str, list[int]]) -> None:
        from types import SimpleNamespace

        self.consumer, self.buffer = consumer, {tp: list(offsets) for tp, offsets in records.items()}
        self.positions = {tp: offsets[0] for tp, offsets in records.items()}
        self.sought: list[tuple[str, int]] = []
        self.states = {tp: _State(self, tp) for tp in records}
        assignment = SimpleNamespace(state_value=self.states.get)
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))

    def fetched_records(self, partitions: Any) -> dict[str, list[Any]]:
        from types import SimpleNamespace

        # as aiokafka's: an empty set is read as every partition
        drained = {tp: offsets for tp, offsets in self.buffer.items() if not partitions or tp in partitions}
        for tp, offsets in drained.items():
            del self.buffer[tp]
            self.positions[tp] = offsets[-1] + 1
        return {tp: [SimpleNamespace(offset=o) for o in offsets] for tp, offsets in drained.items()}

    def seek(self, tp: str, offset: int) -> None:
        self.sought.append((tp, offset))
        self.positions[tp] = offset


class _State:
    """aiokafka's state of a partition: one object per partition and assignment, its position live."""

    has_valid_position = True

    def __init__(self, inner: _Inner, tp: str) -> None:
        self.inner, self.tp = inner, tp

    @property
    def position(self) -> int:
        return self.inner.positions[self.tp]


class _Thread:
    def __init__(self, consumer: _Fetching, inner: _Inner) -> None:
        self.consumer, self.inner = consumer, inner

    def _ensure_consumer(self) -> _Inner:
        return self.inner

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        return await fun(*args)

    async def _fetch_records(self, inner: _Inner, partitions: Any, *, timeout: float, max_records: int) -> Any:
        self.consumer.while_fetching()
        return inner.fetched_records(partitions)


class _Fetching:
    """What ``getmany`` uses of faust's consumer; ``stop_after`` records stops the flow mid-batch."""

    def __init__(
        self,
        records: dict[str, list[int]],
        *,
        flow_active: bool = True,
        stop_after: int = -1,
        active: set[str] | None = None,
    ) -> None:
        import logging
        from types import SimpleNamespace

        self.flow_active, self.stop_after = flow_active, stop_after
        self.should_stop = False
        self._active_partitions = {"a", "b"} if active is None else active
        self._buffered_partitions: set[str] = set()
        self.not_waiting_next_records = asyncio.Event()
        self.can_resume_flow = asyncio.Event()
        self.log = logging.getLogger("test")
        self.seeks = 0
        self.app = SimpleNamespace(
            consumer_generation_id=3, client_only=False, monitor=SimpleNamespace(track_tp_end_offset=_ignore)
        )
        self.scheduler = SimpleNamespace(iterate=lambda rs: ((tp, r) for tp, recs in rs.items() for r in recs))
        self.inner = _Inner(self, records)
        self._thread = _Thread(self, self.inner)
        self.while_fetching: Any = lambda: None

    def _get_active_partitions(self) -> set[str]:
        return self._active_partitions

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def sleep(self, seconds: float) -> None:
        return None

    def _to_message(self, tp: str, record: Any) -> tuple[str, int]:
        if self.stop_after == 0:
            self.flow_active = False
        self.stop_after -= 1
        return (tp, record.offset)

    def highwater(self, tp: str) -> int:
        return 99

    async def perform_seek(self) -> None:  # faust's getmany calls this when the flow is stopped
        self.seeks += 1


def _ignore(*_: Any) -> None:
    return None


async def _drain(consumer: _Fetching) -> list[Any]:
    return [m async for _tp, m in getmany(consumer, timeout=1.0)]


def test_getmany_yields_the_active_partitions_records_in_the_schedulers_order() -> None:
    consumer = _Fetching({"a": [1, 2], "b": [3], "c": [4]})
    assert asyncio.run(_drain(consumer)) == [("a", 1), ("a", 2), ("b", 3)]
    assert consumer.inner.buffer == {"c": [4]}  # c is paused: not fetched for, left in aiokafka's buffer


def test_getmany_gives_back_a_stopped_flows_records_without_seeking_to_committed() -> None:
    """faust seeks back to the committed offsets here, racing the rebalance's recovery in the consumer
    thread; the recovery that ends every stopped flow seeks instead (stream_processors/README.md). What was
    fetched and not handed over is sought back to, so that it is fetched again."""

    async def stop_while_fetching() -> list[Any]:
        stopped = _Fetching({"a": [1, 2]})
        stopped.while_fetching = lambda: setattr(stopped, "flow_active", False)
        assert await _drain(stopped) == [] and stopped.seeks == 0
        return stopped.inner.sought

    assert asyncio.run(stop_while_fetching()) == [("a", 1)]
    midway = _Fetching({"a": [1, 2, 3]}, stop_after=0)  # stops while the first is handed over
    assert asyncio.run(_drain(midway)) == [("a", 1)] and midway.seeks == 0
    assert midway.inner.sought == [("a", 2)] and midway.inner.positions["a"] == 2


def test_getmany_fetches_for_a_copy_of_the_active_partitions() -> None:
    """A revocation that empties the active set while the fetch waits must not make it drain every partition
    (aiokafka reads an empty set as "all"): the changelog records a recovery has just sought would be
    consumed and dropped (cause 8b in stream_processors/README.md)."""
    consumer = _Fetching({"a": [1], "changelog": [0, 1, 2]}, active={"a"})

    def revoke() -> None:
        consumer._active_partitions.clear()
        consumer.flow_active = False

    consumer.while_fetching = revoke
    assert asyncio.run(_drain(consumer)) == []
    assert consumer.inner.buffer == {"changelog": [0, 1, 2]} and consumer.inner.positions["changelog"] == 0
    assert consumer.inner.sought == [("a", 1)]  # a's record was fetched and not handed over: given back


def test_getmany_leaves_a_partition_sought_since_the_fetch_where_it_was_sought() -> None:
    consumer = _Fetching({"a": [5, 6, 7]}, stop_after=0)

    async def run() -> list[Any]:
        got = []
        async for _tp, message in getmany(consumer, timeout=1.0):
            got.append(message)
            consumer.inner.seek("a", 40)  # a recovery's seek while the batch is handed over
        return got

    assert asyncio.run(run()) == [("a", 5)]
    assert consumer.inner.sought == [("a", 40)] and consumer.inner.positions["a"] == 40


def test_getmany_gives_nothing_back_to_a_new_assignment_of_the_partition() -> None:
    """A rebalance between the fetch and the give-back: the new assignment positions the partition itself (here
    at the same offset the fetch left); seeking it back would only repeat records, but it is not this
    fetch's to move."""
    consumer = _Fetching({"a": [5, 6, 7]}, stop_after=0)

    async def run() -> list[Any]:
        got = []
        async for _tp, message in getmany(consumer, timeout=1.0):
            got.append(message)
            consumer.inner.states["a"] = _State(consumer.inner, "a")  # aiokafka's state of a new assignment
        return got

    assert asyncio.run(run()) == [("a", 5)]
    assert consumer.inner.sought == [] and consumer.inner.positions["a"] == 8
