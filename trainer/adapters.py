"""``mc adapters list`` and ``mc adapters rollback``: what S3 holds, and announcing an older version."""

from __future__ import annotations

from dataclasses import dataclass

from producers.publisher import EventPublisher
from producers.settings import ProducerSettings
from schemas.errors import AdapterError
from schemas.events import AdapterUpdate
from schemas.signing import sign_update
from schemas.topics import TopicKey
from trainer.announce import Announcements
from trainer.settings import TrainerSettings
from trainer.store import AdapterStore

__all__ = ["VersionRow", "list_versions", "rollback"]


@dataclass(frozen=True)
class VersionRow:
    update: AdapterUpdate
    current: bool


def _current(settings: TrainerSettings, model_id: str) -> AdapterUpdate | None:
    view = Announcements(settings)
    try:
        view.catch_up()
        return view.latest(model_id)
    finally:
        view.close()


def list_versions(settings: TrainerSettings, model_id: str) -> tuple[list[VersionRow], AdapterUpdate | None]:
    """Every version in S3 (ascending), which one is announced as current, and that announcement."""
    store = AdapterStore(settings)
    current = _current(settings, model_id)
    rows = [
        VersionRow(store.manifest(model_id, v), current is not None and current.version == v)
        for v in store.versions(model_id)
    ]
    return rows, current


def rollback(settings: TrainerSettings, model_id: str, version: int) -> AdapterUpdate:
    """Announce ``version`` (0: the base model) as current again; the next window trains on top of it."""
    if version == 0:
        update = AdapterUpdate(model_id=model_id, version=0, base_model=settings.base_model_name, rollback=True)
    else:
        manifest = AdapterStore(settings).manifest_or_none(model_id, version)
        if manifest is None:
            raise AdapterError(f"{model_id} has no v{version} in s3://{settings.s3_bucket}/")
        update = AdapterUpdate(
            model_id=model_id,
            version=version,
            uri=manifest.uri,
            files=manifest.files,
            base_model=manifest.base_model,
            parent_version=manifest.parent_version,
            window=manifest.window,
            metrics=manifest.metrics,
            rollback=True,
        )
    update = sign_update(update, settings.signing_key())
    producer_fields = {k: v for k, v in settings.model_dump().items() if k in ProducerSettings.model_fields}
    with EventPublisher(ProducerSettings(**producer_fields)) as events:
        events.publish(TopicKey.ADAPTER_UPDATES, update).result(settings.publish_timeout_s)
    return update
