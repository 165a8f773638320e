"""Per-model state, rebuilt from S3 and the compacted topic (so a SIGKILL loses nothing).

- the newest version in S3 (``head``): the next version is ``max(head, announced) + 1``;
- the current version: the latest announcement (a rollback included), the parent of the next one;
- the example ids of the model's last ``horizon`` versions (their ``examples.json``): an example
  re-delivered (a crash, a rebalance) while fewer newer versions exist is skipped, one re-read later
  than that is trained again; memory and the reads at start stay bounded however long a model lives;
- the EMA reward baseline: ``metrics["reward_baseline"]`` of the current version's manifest.

A version whose manifest is in S3 but which was never announced (the trainer died between the two)
is announced when the state is built, before any new window of that model is trained. Whether it
was announced is decided by versions and by offsets on the compacted topic, never by comparing
``created_at`` values that different hosts' clocks wrote: each manifest records the offset of the
announcement it was trained on top of (``metrics["parent_announcement_offset"]``, -1 for none).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.events import AdapterUpdate
from trainer.announce import Announced
from trainer.store import AdapterStore

__all__ = ["PARENT_OFFSET", "ModelState", "load_state", "needs_announcing"]

#: manifest metric: offset on adapter-updates of the announcement the version was trained on top of
PARENT_OFFSET = "parent_announcement_offset"

_log = logging.getLogger(__name__)


@dataclass
class ModelState:
    model_id: str
    head: int = 0
    horizon: int = 64
    #: (version, its example ids), the newest ``horizon`` versions
    recent: deque[tuple[int, frozenset[str]]] = field(default_factory=deque)

    def trained(self, example_id: str) -> bool:
        """Whether one of the remembered versions was trained on ``example_id``."""
        return any(example_id in ids for _, ids in self.recent)

    def remember(self, version: int, example_ids: Iterable[str]) -> None:
        self.recent.append((version, frozenset(example_ids)))
        while len(self.recent) > self.horizon:
            self.recent.popleft()

    def next_version(self, current: AdapterUpdate | None) -> int:
        return max(self.head, current.version if current is not None else 0) + 1


def needs_announcing(newest: AdapterUpdate, latest: Announced | None) -> bool:
    """True when ``newest`` (the newest manifest) was never announced.

    Any announcement after the one ``newest`` was trained on top of (a rollback, another trainer's
    announcement of this version) supersedes it; the one it was trained on (its parent's) does
    not. Manifests of older trainers, which lack the offset, are announced only when the latest
    announcement is not a rollback: a rollback is never undone.
    """
    if latest is None:
        return True
    current = latest.update
    if current.update_id == newest.update_id or current.version >= newest.version:
        return False  # announced already (a re-announcement of this version counts too)
    based_on = newest.metrics.get(PARENT_OFFSET)
    if based_on is None:
        return not current.rollback
    return latest.offset <= based_on


def load_state(
    model_id: str,
    store: AdapterStore,
    latest: Announced | None,
    announce: Callable[[AdapterUpdate], None],
    horizon: int = 64,
) -> ModelState:
    versions = store.versions(model_id)
    state = ModelState(model_id, head=versions[-1] if versions else 0, horizon=horizon)
    for version in versions[-horizon:]:
        state.remember(version, store.example_ids(model_id, version))
    if versions:
        newest = store.manifest(model_id, versions[-1])
        if needs_announcing(newest, latest):
            _log.info("%s v%d is in S3 but was never announced: announcing it", model_id, newest.version)
            announce(newest)
    return state
