"""The alias table (model_id -> the adapter serving it) and in-flight counting per adapter name.

A request resolves its model_id once, when it starts, and holds the adapter it got until it ends:
a switch only changes what *new* requests get, and an old name is unloaded only after every request
holding it has finished (:meth:`AdapterRegistry.wait_drained`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from inference.api import LiveAdapter, SwitchRecord

__all__ = ["AdapterRegistry", "Serving", "adapter_name"]


def adapter_name(model_id: str, version: int) -> str:
    """Each version gets its own name: vLLM's prefix cache is keyed by name, so reusing one is unsafe."""
    return f"{model_id}@v{version}"


@dataclass(frozen=True, slots=True)
class Serving:
    """What one request is served by."""

    model_id: str
    version: int
    served_name: str  #: the adapter name, or the base model's served name for version 0
    path: str | None = None  #: local folder of the adapter (None for the base model)


@dataclass
class _Entry:
    serving: Serving
    live_since: float
    load_ms: float | None
    history: deque[SwitchRecord] = field(default_factory=deque)


class AdapterRegistry:
    """Single-threaded (the node's event loop): no locks needed."""

    def __init__(self, base_model: str, *, history_size: int = 50) -> None:
        self.base_model = base_model
        self._entries: dict[str, _Entry] = {}
        self._in_flight: Counter[str] = Counter()
        self._history_size = history_size

    def resolve(self, model: str) -> Serving:
        """The live adapter of ``model``; the base model for the base's name and unknown model_ids."""
        entry = self._entries.get(model)
        if entry is not None:
            return entry.serving
        return Serving(model, 0, self.base_model)

    @contextmanager
    def hold(self, model: str) -> Iterator[Serving]:
        serving = self.resolve(model)
        self._in_flight[serving.served_name] += 1
        try:
            yield serving
        finally:
            self._in_flight[serving.served_name] -= 1
            if self._in_flight[serving.served_name] <= 0:
                del self._in_flight[serving.served_name]

    def live_version(self, model_id: str) -> int:
        entry = self._entries.get(model_id)
        return entry.serving.version if entry else 0

    def switch(self, serving: Serving, *, load_ms: float | None = None) -> Serving | None:
        """Make ``serving`` live for its model_id; returns what served before (None if nothing had)."""
        now = time.time()
        old = self._entries.get(serving.model_id)
        history: deque[SwitchRecord] = old.history if old else deque(maxlen=self._history_size)
        if history:
            history[-1].live_until = now
        history.append(SwitchRecord(version=serving.version, adapter=serving.served_name, live_from=now))
        self._entries[serving.model_id] = _Entry(serving, now, load_ms, history)
        return old.serving if old else None

    def in_flight(self, name: str) -> int:
        return self._in_flight.get(name, 0)

    def is_referenced(self, name: str) -> bool:
        """Whether ``name`` is live for some model_id (then it must not be unloaded)."""
        return any(e.serving.served_name == name for e in self._entries.values())

    def find(self, name: str) -> Serving | None:
        for entry in self._entries.values():
            if entry.serving.served_name == name:
                return entry.serving
        return None

    async def wait_drained(self, name: str, timeout_s: float, poll_s: float = 0.02) -> bool:
        """Wait until no request holds ``name``; False if that took longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight(name) > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll_s)
        return True

    def loaded_names(self) -> list[str]:
        return [e.serving.served_name for e in self._entries.values() if e.serving.version > 0]

    def snapshot(self) -> dict[str, LiveAdapter]:
        return {
            model_id: LiveAdapter(
                model_id=model_id,
                version=e.serving.version,
                adapter=e.serving.served_name,
                live_since=e.live_since,
                in_flight=self.in_flight(e.serving.served_name),
                load_ms=e.load_ms,
                history=[r.model_copy() for r in e.history],
            )
            for model_id, e in self._entries.items()
        }
