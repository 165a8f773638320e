"""Windows of training examples per model, and which offsets are safe to commit.

A model's window closes after ``max_examples`` examples or ``max_seconds`` after its first one,
whichever comes first. Offsets are committed per partition only up to the first record still
sitting in an open (or not yet published) window, so a crash never loses a window: everything
past the committed offset is read again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.events import OffsetRange, TrainingExample, TrainingWindow

__all__ = ["OffsetTracker", "Record", "Window", "Windows"]

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Record:
    """Where a training example was read from."""

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)


@dataclass
class Window:
    model_id: str
    opened_at: float
    examples: list[TrainingExample] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    @property
    def example_ids(self) -> list[str]:
        return [ex.example_id for ex in self.examples]

    def ranges(self) -> list[OffsetRange]:
        """One covering range per topic-partition (other models' records may lie in between)."""
        spans: dict[TopicPartition, tuple[int, int]] = {}
        for rec in self.records:
            lo, hi = spans.get(rec.tp, (rec.offset, rec.offset))
            spans[rec.tp] = (min(lo, rec.offset), max(hi, rec.offset))
        return [
            OffsetRange(topic=t, partition=p, first_offset=lo, last_offset=hi)
            for (t, p), (lo, hi) in sorted(spans.items())
        ]

    def training_window(self) -> TrainingWindow:
        return TrainingWindow(ranges=self.ranges(), example_count=len(self.examples))


class Windows:
    """The open windows, one per model."""

    def __init__(self, max_examples: int, max_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_examples = max_examples
        self.max_seconds = max_seconds
        self.clock = clock
        self._open: dict[str, Window] = {}

    def __len__(self) -> int:
        return len(self._open)

    def contains(self, model_id: str, example_id: str) -> bool:
        window = self._open.get(model_id)
        return window is not None and example_id in window.example_ids

    def add(self, example: TrainingExample, record: Record) -> Window | None:
        """Add an example; return its window if that made it full (it is then no longer open)."""
        window = self._open.get(example.model_id)
        if window is None:
            window = self._open[example.model_id] = Window(example.model_id, self.clock())
        window.examples.append(example)
        window.records.append(record)
        if len(window.examples) >= self.max_examples:
            return self._open.pop(example.model_id)
        return None

    def due(self) -> list[Window]:
        """Pop the windows whose time is up."""
        now = self.clock()
        late = [m for m, w in self._open.items() if now - w.opened_at >= self.max_seconds]
        return [self._open.pop(m) for m in late]

    def drop(self, tps: Iterable[TopicPartition]) -> list[Window]:
        """Forget windows holding records of these partitions (revoked: their new owner re-reads them)."""
        gone = set(tps)
        dropped = [m for m, w in self._open.items() if any(r.tp in gone for r in w.records)]
        return [self._open.pop(m) for m in dropped]

    def records(self) -> Iterable[Record]:
        for window in self._open.values():
            yield from window.records


class OffsetTracker:
    """Per partition: the next offset to read, and the first one that is not durable yet."""

    def __init__(self) -> None:
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def seen(self, record: Record) -> None:
        self._next[record.tp] = max(self._next.get(record.tp, 0), record.offset + 1)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._next.pop(tp, None)
            self._committed.pop(tp, None)

    def committable(self, pending: Iterable[Record]) -> dict[TopicPartition, int]:
        """Offsets to commit now: below the first pending record of each partition, if that moved."""
        limit = dict(self._next)
        for rec in pending:
            if rec.tp in limit:
                limit[rec.tp] = min(limit[rec.tp], rec.offset)
        return {tp: off for tp, off in limit.items() if off > self._committed.get(tp, -1)}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)
