"""Publication of a trained window, in the order that makes a crash at any point harmless.

1. the adapter is saved locally (by the caller);
2. ``adapter_config.json``, ``adapter_model.safetensors``, the optimizer state and ``examples.json``
   are uploaded to ``adapters/{model_id}/v{N}/``, each only if absent (debris if we die now: nothing
   ever replaces them, and the next attempt gives the number v{N} up, :class:`VersionTaken`);
3. ``manifest.json`` (the AdapterUpdate itself) is created only if absent: the version now exists,
   and it is the only adapter that will ever exist under v{N};
4. the AdapterUpdate is published on the compacted topic (if we die before, the restart announces it);
5. the caller commits the window's offsets (if we die before, the restart skips its examples).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from producers.publisher import EventPublisher
from schemas.canary import canary_enabled_for
from schemas.events import AdapterUpdate, TrainingWindow
from schemas.signing import sign_update
from schemas.topics import TopicKey
from trainer.announce import Announcements
from trainer.settings import TrainerSettings
from trainer.store import AdapterStore, VersionTaken

__all__ = ["AdapterPublisher"]

_log = logging.getLogger(__name__)


class AdapterPublisher:
    def __init__(
        self, settings: TrainerSettings, store: AdapterStore, view: Announcements, events: EventPublisher
    ) -> None:
        self.settings = settings
        self.store = store
        self.view = view
        self.events = events

    def announce(self, update: AdapterUpdate) -> None:
        """Sign, publish on adapter-updates and wait for the broker's acknowledgement.

        With the canary on for the model (``MC_TRAINER_CANARY_ENABLED``, ``MC_TRAINER_CANARY_MODELS``) a new version is
        announced as a ``candidate``: the gate, not the trainer, decides when it serves (issue #14).
        """
        s = self.settings
        new = update.stage == "live" and not update.rollback and update.decision is None and update.version > 0
        if new and canary_enabled_for(update.model_id, s.canary_enabled, s.canary_models):
            update = update.model_copy(update={"stage": "candidate"})
        update = sign_update(update, self.settings.signing_key())
        delivery = self.events.publish(TopicKey.ADAPTER_UPDATES, update).result(self.settings.publish_timeout_s)
        self.view.record(update, delivery.partition, delivery.offset)

    def publish(
        self,
        model_id: str,
        version: int,
        parent_version: int,
        folder: Path,
        window: TrainingWindow,
        example_ids: list[str],
        metrics: dict[str, float],
    ) -> tuple[AdapterUpdate, bool] | None:
        """Upload and announce v{version}; (the announced update, whether it is ours).

        Returns None when v{version} already exists as a *different* adapter (another window or
        parent): the caller must rebuild its state and train again on top of it. When it exists
        with the same window and parent, it is our own earlier attempt: it is announced as is.
        Raises :class:`VersionTaken` when v{version} holds another writer's files and no manifest
        came for them within ``MC_TRAINER_CLAIM_WAIT_S`` (a writer that died): the number is given up.
        """
        # A version is never rewritten: look before uploading anything.
        existing = self.store.manifest_or_none(model_id, version)
        if existing is None:
            started = time.perf_counter()
            try:
                digests = self.store.upload_files(model_id, version, folder, example_ids)
            except VersionTaken:
                # Another writer's files are there: it is uploading (a rebalance) or it died.
                _log.warning("%s v%d holds another writer's files: waiting for its manifest", model_id, version)
                existing = self.store.wait_for_manifest(model_id, version, self.settings.claim_wait_s)
                if existing is None:
                    raise
            else:
                metrics = {**metrics, "upload_s": time.perf_counter() - started}
                update = AdapterUpdate(
                    model_id=model_id,
                    version=version,
                    uri=self.store.uri(model_id, version),
                    files=digests,
                    base_model=self.settings.base_model_name,
                    parent_version=parent_version,
                    window=window,
                    metrics=metrics,
                )
                if self.store.put_manifest(update):
                    self.announce(update)
                    return update, True
                # Lost a race with another writer of this version (two owners during a rebalance).
                existing = self.store.manifest(model_id, version)
        if existing.window != window or existing.parent_version != parent_version:
            _log.warning("%s v%d exists with another window: retraining on top of it", model_id, version)
            return None
        _log.info("%s v%d exists from an earlier attempt at this window: announcing it", model_id, version)
        self.announce(existing)
        return existing, False
