"""The offset gate (``stream_processors/guards.py``): turns set by a seek, records admitted in offset order,
and a partition whose fetch passed its turn sought back to it (issue #11: a stall seen in ``mc chaos join``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, NamedTuple

from stream_processors.guards import OffsetGate


class TP(NamedTuple):
    topic: str
    partition: int


P0, R0 = TP("preds", 0), TP("rews", 0)


class _Consumer:
    def __init__(self, committed: dict[TP, int | None]) -> None:
        self._committed_offset = dict(committed)
        self.sought: list[dict[TP, int]] = []

    def assignment(self) -> set[TP]:
        return {*self._committed_offset, TP("preds-changelog", 0)}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: 7 for tp in tps}

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        self.sought.append(dict(offsets))


def _gate(committed: dict[TP, int | None]) -> tuple[OffsetGate, Any]:
    app = SimpleNamespace(consumer_generation_id=4, rebalancing=False)
    app.consumer = _Consumer(committed)
    return OffsetGate(app, {"preds", "rews"}), app


def _msg(tp: TP, offset: int, generation: int = 4) -> Any:
    return SimpleNamespace(tp=tp, offset=offset, generation_id=generation)


def test_a_seek_sets_each_turn_and_seeks_partitions_without_a_commit_to_their_start() -> None:
    gate, app = _gate({P0: 120, R0: None})
    asyncio.run(gate.on_sought(app.consumer))
    assert gate.expected == {P0: 120, R0: 7}
    assert app.consumer.sought == [{R0: 7}]  # aiokafka leaves such a partition where its fetches were


def test_records_are_admitted_in_offset_order_from_the_turn() -> None:
    async def run() -> list[bool]:
        gate, app = _gate({P0: 120, R0: 5})
        await gate.on_sought(app.consumer)
        offsets = [119, 121, 120, 121, 122]
        return [await gate.admit(_msg(P0, o)) for o in offsets] + [await gate.admit(_msg(P0, 123, generation=3))]

    assert asyncio.run(run()) == [False, False, True, True, True, False]


def test_a_partition_whose_fetch_passed_its_turn_is_sought_back_once() -> None:
    async def run() -> tuple[list[dict[TP, int]], bool]:
        gate, app = _gate({P0: 303, R0: 5})
        gate.reseek_after_s = 0.05
        await gate.on_sought(app.consumer)
        for offset in (333, 334):  # ahead of the turn, before the wait is long enough: skipped only
            assert not await gate.admit(_msg(P0, offset))
        await asyncio.sleep(0.06)
        for offset in (335, 336):  # still ahead: sought back to the turn, once
            assert not await gate.admit(_msg(P0, offset))
        return app.consumer.sought, await gate.admit(_msg(P0, 303))

    sought, admitted = asyncio.run(run())
    assert sought == [{P0: 303}] and admitted


def test_no_seek_back_while_a_rebalance_is_under_way() -> None:
    async def run() -> list[dict[TP, int]]:
        gate, app = _gate({P0: 303, R0: 5})
        gate.reseek_after_s = 0.0
        await gate.on_sought(app.consumer)
        app.rebalancing = True
        for offset in (333, 334, 335):
            await gate.admit(_msg(P0, offset))
        sought: list[dict[TP, int]] = app.consumer.sought
        return sought

    assert asyncio.run(run()) == []
