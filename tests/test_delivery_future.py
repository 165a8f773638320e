"""DeliveryFuture: settled from another thread, awaited, adapted for asyncio."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from producers import Delivery, DeliveryFuture
from schemas import DeliveryError


def _msg(partition: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(partition=lambda: partition, offset=lambda: offset)


class _Err:
    """Stands for librdkafka's KafkaError in a delivery report (pure logic, no broker involved)."""

    TEXT = "Broker: Unknown topic or partition"

    def name(self) -> str:
        return "UNKNOWN_TOPIC_OR_PART"

    def __str__(self) -> str:
        return self.TEXT


_Err.str = _Err.__str__  # type: ignore[attr-defined]  # librdkafka's error has a .str() method


def test_result_waits_for_a_report_from_another_thread() -> None:
    fut = DeliveryFuture("t", b"k", lambda f: None)
    threading.Timer(0.05, fut, args=(None, _msg(3, 42))).start()
    assert fut.result(5) == Delivery("t", 3, 42)
    assert fut.done() and fut.exception() is None


def test_timeout_and_failure() -> None:
    failures: list[tuple[str, bytes | None, str]] = []
    fut = DeliveryFuture("t", b"k", failures.append)
    with pytest.raises(TimeoutError):
        fut.result(0.01)
    seen: list[DeliveryFuture] = []
    fut.add_done_callback(seen.append)
    fut(_Err(), None)
    with pytest.raises(DeliveryError, match="Unknown topic") as info:
        fut.result(0)
    assert info.value.code == "UNKNOWN_TOPIC_OR_PART"
    assert failures == [("t", b"k", "Broker: Unknown topic or partition")]
    assert seen == [fut]
    late: list[DeliveryFuture] = []
    fut.add_done_callback(late.append)  # after settlement: runs at once
    assert late == [fut]


def test_as_concurrent_works_with_asyncio() -> None:
    fut = DeliveryFuture("t", None, lambda f: None)

    async def main() -> Delivery:
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, lambda: threading.Thread(target=fut, args=(None, _msg(0, 7))).start())
        return await asyncio.wrap_future(fut.as_concurrent())

    assert asyncio.run(main()) == Delivery("t", 0, 7)


def test_the_future_is_its_own_delivery_callback() -> None:
    """librdkafka gets the future itself as on_delivery: no bound method or closure per event."""
    fut = DeliveryFuture("t", b"k", lambda f: None)
    fut(None, _msg(2, 9))
    assert fut.result(0) == Delivery("t", 2, 9)


def test_a_failing_callback_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    fut = DeliveryFuture("t", None, lambda f: None)
    seen: list[int] = []

    def bad(f: DeliveryFuture) -> None:
        raise RuntimeError("boom")

    fut.add_done_callback(lambda f: seen.append(1))
    fut.add_done_callback(bad)
    fut.add_done_callback(lambda f: seen.append(3))
    fut(None, _msg(0, 1))  # must not raise into the poll thread
    assert seen == [1, 3]
    assert "boom" in caplog.text


def test_a_cancelled_concurrent_future_does_not_break_settlement() -> None:
    fut = DeliveryFuture("t", None, lambda f: None)
    conc = fut.as_concurrent()
    assert conc.cancel()  # what asyncio.wrap_future does when its awaiter is cancelled
    fut(None, _msg(0, 1))
    assert conc.cancelled() and fut.result(0).offset == 1


def _race_once() -> tuple[list[Delivery], list[int]]:
    fut = DeliveryFuture("t", None, lambda f: None)
    calls: list[int] = []
    results: list[Delivery] = []
    start = threading.Barrier(5)

    def waiter() -> None:
        start.wait()
        results.append(fut.result(5))

    def adder(i: int) -> None:
        start.wait()
        fut.add_done_callback(lambda f: calls.append(i))

    def settler() -> None:
        start.wait()
        fut(None, _msg(1, 2))

    threads = [threading.Thread(target=waiter), threading.Thread(target=waiter), threading.Thread(target=settler)]
    threads += [threading.Thread(target=adder, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results, calls


def test_settling_while_others_wait_and_add_callbacks() -> None:
    """No lock on the settling side: every waiter wakes and every callback runs exactly once."""
    for _ in range(200):
        results, calls = _race_once()
        assert results == [Delivery("t", 1, 2)] * 2
        assert sorted(calls) == [0, 1]
