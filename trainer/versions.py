"""Per-model state, rebuilt from S3 and the compacted topic (so a SIGKILL loses nothing).

- the newest version in S3 (``head``): the next version is ``max(head, announced) + 1``;
- the current version: the latest announcement (a rollback included), the parent of the next one;
- the example ids the model was trained on: the union of every version's ``examples.json``;
- the EMA reward baseline: ``metrics["reward_baseline"]`` of the current version's manifest.

A version whose manifest is in S3 but which was never announced (the trainer died between the two)
is announced when the state is built, before any new window of that model is trained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.events import AdapterUpdate
from trainer.store import AdapterStore

__all__ = ["ModelState", "load_state", "needs_announcing"]

_log = logging.getLogger(__name__)


@dataclass
class ModelState:
    model_id: str
    head: int = 0
    trained: set[str] = field(default_factory=set)

    def next_version(self, current: AdapterUpdate | None) -> int:
        return max(self.head, current.version if current is not None else 0) + 1


def needs_announcing(newest: AdapterUpdate, latest: AdapterUpdate | None) -> bool:
    """True when ``newest`` (the newest manifest) was never announced.

    An announcement made after the manifest was written (a rollback) supersedes it; one made
    before it (the parent's) does not.
    """
    if latest is None:
        return True
    if latest.update_id == newest.update_id:
        return False
    return latest.created_at < newest.created_at


def load_state(
    model_id: str,
    store: AdapterStore,
    latest: AdapterUpdate | None,
    announce: Callable[[AdapterUpdate], None],
) -> ModelState:
    versions = store.versions(model_id)
    state = ModelState(model_id, head=versions[-1] if versions else 0)
    for version in versions:
        state.trained.update(store.example_ids(model_id, version))
    if versions:
        newest = store.manifest(model_id, versions[-1])
        if needs_announcing(newest, latest):
            _log.info("%s v%d is in S3 but was never announced: announcing it", model_id, newest.version)
            announce(newest)
    return state
