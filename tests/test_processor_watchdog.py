"""The recovery watchdog (``stream_processors/watchdog.py``): which changelog partitions count as silent, and
that a silent partition is sought back once per recovery, only while the recovery reads (issue #11, cause 8b)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, NamedTuple

from stream_processors.watchdog import RecoveryWatchdog, silent_partitions


class TP(NamedTuple):
    topic: str
    partition: int


J0, J1, J2, M0 = TP("join-changelog", 0), TP("join-changelog", 1), TP("join-changelog", 2), TP("metrics-changelog", 0)


def _recovery(started: float | None) -> Any:
    return SimpleNamespace(
        _recovery_started_at=started,
        active_tps={J0, J1, J2, M0},
        # faust: offsets are the last applied (-1: none), highwaters the last offset (end offset - 1)
        active_offsets={J0: -1, J1: 20, J2: -1, M0: 5},
        active_highwaters={J0: 583, J1: 22, J2: -1, M0: 5},
        _active_events_received_at={J1: 1.0},
    )


def test_silent_partitions_are_those_behind_that_received_nothing() -> None:
    # J1 received records, J2 is empty, M0 is up to date: only J0, sought where faust's recovery seeks it
    assert silent_partitions(_recovery(0.0)) == {J0: 0}


def test_a_silent_partition_is_sought_once_per_recovery_and_only_while_reading() -> None:
    sought: list[dict[TP, int]] = []

    async def seek_wait(offsets: dict[TP, int]) -> None:
        sought.append(dict(offsets))

    consumer = SimpleNamespace(flow_active=False, seek_wait=seek_wait)
    recovery = _recovery(time.monotonic() - 60)
    app: Any = SimpleNamespace(in_recovery=True, consumer=consumer, tables=SimpleNamespace(recovery=recovery))
    watchdog = RecoveryWatchdog(app, silent_s=15.0, log_after_s=1e9)

    async def run() -> None:
        await watchdog.tick()  # the flow is stopped: the recovery is still seeking its offsets
        assert sought == []
        consumer.flow_active = True
        await watchdog.tick()
        await watchdog.tick()  # once per recovery
        assert sought == [{J0: 0}]
        recovery._recovery_started_at = time.monotonic()  # a new recovery, too young
        await watchdog.tick()
        assert len(sought) == 1
        recovery._recovery_started_at = time.monotonic() - 20
        await watchdog.tick()
        assert sought == [{J0: 0}, {J0: 0}]
        app.in_recovery = False
        recovery._recovery_started_at = time.monotonic() - 40
        await watchdog.tick()
        assert len(sought) == 2

    asyncio.run(run())
