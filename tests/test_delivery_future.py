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
    threading.Timer(0.05, fut._on_delivery, args=(None, _msg(3, 42))).start()
    assert fut.result(5) == Delivery("t", 3, 42)
    assert fut.done() and fut.exception() is None


def test_timeout_and_failure() -> None:
    failures: list[tuple[str, bytes | None, str]] = []
    fut = DeliveryFuture("t", b"k", failures.append)
    with pytest.raises(TimeoutError):
        fut.result(0.01)
    seen: list[DeliveryFuture] = []
    fut.add_done_callback(seen.append)
    fut._on_delivery(_Err(), None)
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
        loop.call_later(0.01, lambda: threading.Thread(target=fut._on_delivery, args=(None, _msg(0, 7))).start())
        return await asyncio.wrap_future(fut.as_concurrent())

    assert asyncio.run(main()) == Delivery("t", 0, 7)
