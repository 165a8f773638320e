"""The alias table (model_id -> the adapter serving it) and in-flight counting per adapter name.

A request resolves its model_id once, when it starts, and holds the adapter it got until it ends:
a switch only changes what *new* requests get, and an old name is unloaded only after every request
holding it has finished (:meth:`AdapterRegistry.wait_drained`).

While the gate runs a canary for a model (issue #14), :meth:`AdapterRegistry.resolve` sends a share
``canary_fraction`` of its requests to the canary version. The choice is a hash of the request's
*route key* (the proxy passes the conversation up to its first user message) and the canary's
version, not a coin: every turn of one agent run has the same beginning, so a whole trajectory is
answered by one version, and the version its PredictionEvent names is the one its reward is about.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from inference.api import CanaryAdapter, LiveAdapter, SwitchRecord
from schemas.events import GateDecision

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


@dataclass
class _Canary:
    serving: Serving
    since: float
    requests: int = 0


def routes_to_canary(route_key: bytes, version: int, fraction: float) -> bool:
    """Whether a request with ``route_key`` goes to canary ``version`` (a stable share ``fraction``)."""
    digest = hashlib.sha256(route_key + b"|v" + str(version).encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


class AdapterRegistry:
    """Single-threaded (the node's event loop): no locks needed."""

    def __init__(self, base_model: str, *, history_size: int = 50, canary_fraction: float = 0.0) -> None:
        self.base_model = base_model
        self.canary_fraction = canary_fraction
        self._entries: dict[str, _Entry] = {}
        self._canaries: dict[str, _Canary] = {}
        self._decisions: dict[str, GateDecision] = {}
        self._refused: dict[str, set[int]] = {}
        self._in_flight: Counter[str] = Counter()
        self._history_size = history_size

    def resolve(self, model: str, route_key: bytes | None = None) -> Serving:
        """The adapter serving ``model`` for this request: its canary for a ``canary_fraction`` share of
        route keys while one runs, else the live one; the base model for unknown model_ids."""
        canary = self._canaries.get(model)
        if canary is not None and routes_to_canary(route_key or b"", canary.serving.version, self.canary_fraction):
            canary.requests += 1
            return canary.serving
        entry = self._entries.get(model)
        if entry is not None:
            return entry.serving
        return Serving(model, 0, self.base_model)

    # -- the canary (issue #14) --------------------------------------------------------------------

    def start_canary(self, serving: Serving) -> None:
        self._canaries[serving.model_id] = _Canary(serving, time.time())

    def end_canary(self, model_id: str) -> Serving | None:
        """Stop routing to ``model_id``'s canary at once; what it was (None if none ran)."""
        canary = self._canaries.pop(model_id, None)
        return canary.serving if canary is not None else None

    def canary(self, model_id: str) -> Serving | None:
        canary = self._canaries.get(model_id)
        return canary.serving if canary is not None else None

    def record_decision(self, model_id: str, decision: GateDecision) -> None:
        self._decisions[model_id] = decision
        if decision.outcome != "promote":
            self._refused.setdefault(model_id, set()).add(decision.candidate_version)

    def refused(self, model_id: str) -> set[int]:
        return self._refused.get(model_id, set())

    @contextmanager
    def hold(self, model: str, route_key: bytes | None = None) -> Iterator[Serving]:
        serving = self.resolve(model, route_key)
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
        """Whether ``name`` is live or the canary for some model_id (then it must not be unloaded)."""
        return any(e.serving.served_name == name for e in self._entries.values()) or any(
            c.serving.served_name == name for c in self._canaries.values()
        )

    def find(self, name: str) -> Serving | None:
        for entry in self._entries.values():
            if entry.serving.served_name == name:
                return entry.serving
        for canary in self._canaries.values():
            if canary.serving.served_name == name:
                return canary.serving
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
        live = [e.serving.served_name for e in self._entries.values() if e.serving.version > 0]
        return live + [c.serving.served_name for c in self._canaries.values()]

    def snapshot(self) -> dict[str, LiveAdapter]:
        out: dict[str, LiveAdapter] = {}
        for model_id in {*self._entries, *self._canaries, *self._decisions}:
            e = self._entries.get(model_id)
            serving = e.serving if e is not None else Serving(model_id, 0, self.base_model)
            c = self._canaries.get(model_id)
            out[model_id] = LiveAdapter(
                model_id=model_id,
                version=serving.version,
                adapter=serving.served_name,
                live_since=e.live_since if e is not None else 0.0,
                in_flight=self.in_flight(serving.served_name),
                load_ms=e.load_ms if e is not None else None,
                history=[r.model_copy() for r in e.history] if e is not None else [],
                canary=None
                if c is None
                else CanaryAdapter(
                    version=c.serving.version,
                    adapter=c.serving.served_name,
                    since=c.since,
                    fraction=self.canary_fraction,
                    requests=c.requests,
                ),
                decision=self._decisions.get(model_id),
                refused=sorted(self._refused.get(model_id, ())),
            )
        return out
