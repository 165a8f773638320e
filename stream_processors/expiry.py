"""Event-time watermarks per partition, and the index of when each join state expires.

Expiry never reads the wall clock to decide *whether* a state is old: a state expires when the
watermark of its partition (the newest event time seen there) passes its deadline. The wall clock
only decides *when we look*, and lets the event time of an idle partition move on:

* a partition with records: watermark = the newest event time seen on it (both topics);
* a partition idle for ``idle_after`` (no record, wall time): watermark = the largest of its own,
  the newest of any partition this worker owns, and its own last event time plus the wall time
  since that record. An idle partition's event time cannot move otherwise, so without this rule its
  unmatched events would wait forever. A partition with a backlog is never idle (records flow), so a
  replay after downtime runs on event time only.

After a restart the watermark of a partition is seeded with the newest ``last_ms`` among the
states recovered for it (never ahead of what was seen, so nothing expires early).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["ExpiryIndex", "Watermarks"]


@dataclass(slots=True)
class _Clock:
    event_ms: int | None = None
    last_record_wall: float = 0.0


@dataclass
class Watermarks:
    idle_after_s: float
    wall: Callable[[], float] = time.monotonic
    _parts: dict[int, _Clock] = field(default_factory=dict)

    def assign(self, partitions: Iterable[int]) -> None:
        """Keep the clocks of partitions still owned; new ones start their idle timer now."""
        now = self.wall()
        wanted = set(partitions)
        self._parts = {p: self._parts.get(p) or _Clock(None, now) for p in wanted}

    def seed(self, partition: int, event_ms: int) -> None:
        clock = self._parts.setdefault(partition, _Clock(None, self.wall()))
        if clock.event_ms is None or event_ms > clock.event_ms:
            clock.event_ms = event_ms

    def observe(self, partition: int, event_ms: int) -> None:
        clock = self._parts.setdefault(partition, _Clock(None, 0.0))
        clock.last_record_wall = self.wall()
        if clock.event_ms is None or event_ms > clock.event_ms:
            clock.event_ms = event_ms

    def partitions(self) -> list[int]:
        return list(self._parts)

    def is_idle(self, partition: int) -> bool:
        clock = self._parts.get(partition)
        return clock is not None and self.wall() - clock.last_record_wall >= self.idle_after_s

    def watermark(self, partition: int) -> int | None:
        clock = self._parts.get(partition)
        if clock is None or clock.event_ms is None:
            return None
        idle_for = self.wall() - clock.last_record_wall
        if idle_for < self.idle_after_s:
            return clock.event_ms
        newest = max((c.event_ms for c in self._parts.values() if c.event_ms is not None), default=clock.event_ms)
        return max(clock.event_ms + int(idle_for * 1000), newest)

    def snapshot(self) -> dict[int, dict[str, object]]:
        return {
            p: {"event_ms": c.event_ms, "watermark_ms": self.watermark(p), "idle": self.is_idle(p)}
            for p, c in sorted(self._parts.items())
        }


class ExpiryIndex:
    """Per partition, a min-heap of (deadline, key). Entries go stale when a state's deadline moves:
    the caller re-checks the state itself, so a stale entry costs a lookup, never a wrong expiry."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, str]]] = {}

    def push(self, partition: int, key: str, deadline_ms: int) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (deadline_ms, key))

    def due(self, partition: int, watermark_ms: int) -> Iterator[str]:
        heap = self._heaps.get(partition)
        while heap and heap[0][0] <= watermark_ms:
            yield heapq.heappop(heap)[1]

    def clear(self) -> None:
        self._heaps.clear()

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())
