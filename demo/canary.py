"""The live loop with the canary gate on (issue #14): versions as the trainer publishes them, and when
each one first answered (as the canary, or live) and how its canary ended.

With the gate, a new version is a candidate: the trainer keeps training on top of it (candidates chain),
the gate tries the newest one on ``MC_NODE_CANARY_FRACTION`` of the requests and promotes or refuses it. So
the loop paces itself on what the trainer published (its windows are consumed whatever the gate decides),
not on what went live, and a version's freshness is measured to the moment it first answered any traffic;
its promotion comes later and is reported beside it.

Only what the parts already publish is read: the version's manifest in S3 and the node's ``/status``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import httpx

from demo.freshness import VersionTimes, split
from demo.observe import LiveVersion, Observer
from inference import NodeClient
from schemas.canary import canary_enabled_for
from schemas.errors import AdapterError
from schemas.events import AdapterUpdate
from schemas.settings import ContractSettings

__all__ = ["CanaryFeed", "Served", "canary_enabled"]

_log = logging.getLogger(__name__)


def canary_enabled(model_id: str) -> bool:
    """Whether the trainer the demo starts (it inherits this environment) announces candidates for
    ``model_id``: ``MC_TRAINER_CANARY_ENABLED`` or ``MC_TRAINER_CANARY_MODELS``, read the trainer's way."""
    from trainer import TrainerSettings

    s = TrainerSettings()
    return canary_enabled_for(model_id, s.canary_enabled, s.canary_models)


@dataclass(slots=True)
class Served:
    """What became of one published version."""

    update: AdapterUpdate | None
    published_at: float
    canary_at: float | None = None  # the node's canary ``since`` (it started answering a share)
    live_at: float | None = None  # the node's ``live_from`` (promoted, or a person's promote)
    refused: bool = False  # its canary ended without promotion (refused or inconclusive)

    @property
    def first_served(self) -> float | None:
        times = [t for t in (self.canary_at, self.live_at) if t is not None]
        return min(times) if times else None

    @property
    def outcome(self) -> str:
        if self.live_at is not None:
            return "promoted"
        if self.refused:
            return "refused"
        if self.canary_at is not None:
            return "canary at the end"
        return "never a canary"


class CanaryFeed(Observer):
    """A :class:`~demo.loop.VersionFeed` that reports versions when published (their manifest is in
    S3), and tracks on the node when each one answered; :meth:`resolved` gives the versions with
    ``live_at`` = the first time it answered and freshness to then, at the end of the run."""

    def __init__(self, settings: ContractSettings, model_id: str, node: NodeClient) -> None:
        super().__init__(settings, model_id, node)
        self.served: dict[int, Served] = {}

    def poll(self) -> list[LiveVersion]:
        self._track()
        out: list[LiveVersion] = []
        while True:
            version = self.seen + 1
            try:
                update = self._store.manifest_or_none(self.model_id, version)
            except Exception as exc:  # unreadable: a later poll tries again
                _log.warning("manifest of v%d: %r", version, exc)
                break
            if update is None:  # not published yet
                break
            self.seen = version
            published = update.created_at.timestamp()
            self.served[version] = Served(update, published)
            out.append(LiveVersion(version, None, update.window.example_count, published_at=published))
        return out

    def _track(self) -> None:
        try:
            status = self.node.status()
        except httpx.HTTPError as exc:
            _log.warning("node /status: %r", exc)
            return
        live = status.models.get(self.model_id)
        if live is None:
            return
        for record in live.history:
            if (s := self.served.get(record.version)) is not None and s.live_at is None:
                s.live_at = record.live_from
        if live.canary is not None and (s := self.served.get(live.canary.version)) is not None:
            s.canary_at = s.canary_at or live.canary.since
        for version in live.refused:
            if (s := self.served.get(version)) is not None:
                s.refused = True

    def resolved(self) -> list[LiveVersion]:
        """Every published version, ``live_at`` = when it first answered (None: never did), freshness
        to then; the note says how its canary ended and when it was promoted."""
        self._track()
        return [self._resolve(v, s) for v, s in sorted(self.served.items())]

    def _resolve(self, version: int, s: Served) -> LiveVersion:
        first = s.first_served
        note = s.outcome
        if s.live_at is not None:
            note += f" {s.live_at - s.published_at:.0f} s after publication"
        examples = s.update.window.example_count if s.update else 0
        base = LiveVersion(version, first, examples, published_at=s.published_at)
        if first is None or s.update is None:
            return replace(base, note=note)
        try:
            example, joined_at = self.closing_example(s.update)
        except AdapterError as exc:
            return replace(base, note=f"{note}; {exc}")
        times = VersionTimes.from_metrics(
            version,
            s.update.metrics,
            reward_at=example.reward.created_at.timestamp(),
            joined_at=joined_at,
            created_at=s.published_at,
            live_at=first,
        )
        return replace(base, freshness=split(times), note=note)

    def counts(self) -> dict[str, Any]:
        """Per outcome, how many published versions ended so (for the summary line)."""
        outcomes = [s.outcome for s in self.served.values()]
        promoted = [s.live_at - s.published_at for s in self.served.values() if s.live_at is not None]
        promoted.sort()
        return {
            "published": len(outcomes),
            "canaries": sum(1 for s in self.served.values() if s.canary_at is not None),
            "promoted": outcomes.count("promoted"),
            "refused": outcomes.count("refused"),
            "promotion_s_p50": round(promoted[len(promoted) // 2], 1) if promoted else None,
        }
