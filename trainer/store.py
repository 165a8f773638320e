"""The trainer's view of the adapters in S3: the contract's store plus the trainer's bookkeeping.

Listing, manifests, verified downloads and never-overwriting uploads are
:class:`schemas.adapter_store.AdapterStore` (one implementation for the trainer and the node); this
module adds the two objects only the trainer reads, uploaded beside the adapter files with the same
``If-None-Match: *`` and sha256 metadata. Files of an attempt that crashed before its manifest stay
as debris; the version number is then given up (:mod:`trainer.publish`).

``examples.json`` (the trainer's own bookkeeping, not an adapter file) lists the example ids the
version was trained on; the set of example ids a model was trained on is the union over its
versions, which is how that set survives a SIGKILL. ``optimizer.safetensors`` (bookkeeping too, so
not in the manifest's files, which every node downloads) holds AdamW's moments after the version;
its sha256 travels as the object's metadata and is checked on download. A version without it (or
with a damaged one) continues with a fresh optimizer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from schemas import adapter_store
from schemas.errors import AdapterVerificationError, StorageError, VersionTaken
from schemas.events import AdapterUpdate
from trainer.model import OPTIMIZER_FILE

__all__ = ["EXAMPLES_FILE", "AdapterStore", "VersionTaken"]

EXAMPLES_FILE = "examples.json"

_log = logging.getLogger(__name__)


class AdapterStore(adapter_store.AdapterStore):
    """:class:`schemas.adapter_store.AdapterStore` with the trainer's examples and optimizer state."""

    def example_ids(self, model_id: str, version: int) -> list[str]:
        data = self.read(model_id, version, EXAMPLES_FILE)
        if data is None:
            return []  # written by something else than this trainer (a hand-made adapter)
        return [str(i) for i in json.loads(data)]

    def download(self, update: AdapterUpdate, folder: Path) -> Path:
        """The version's adapter files into ``folder`` (verified), and its optimizer state if it has one."""
        super().download(update, folder)
        path = folder / OPTIMIZER_FILE
        path.unlink(missing_ok=True)  # never continue with the moments of another version
        try:
            data = self.read_checked(update.model_id, update.version, OPTIMIZER_FILE)
        except StorageError as exc:
            _log.info(
                "%s v%d: %s not readable (%s): a fresh optimizer", update.model_id, update.version, OPTIMIZER_FILE, exc
            )
            return folder
        except AdapterVerificationError as exc:
            _log.warning("%s: a fresh optimizer", exc)
            return folder
        if data is None:
            _log.info("%s v%d has no %s: a fresh optimizer", update.model_id, update.version, OPTIMIZER_FILE)
            return folder
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return folder

    def upload_files(self, model_id: str, version: int, folder: Path, example_ids: list[str]) -> dict[str, str]:
        """Upload the adapter files, the optimizer state and the example ids, each only if absent;
        the sha256 of each adapter file."""
        extra = {}
        state = folder / OPTIMIZER_FILE
        if state.exists():
            extra[OPTIMIZER_FILE] = state.read_bytes()
        extra[EXAMPLES_FILE] = json.dumps(example_ids).encode()
        return self.upload(model_id, version, folder, extra=extra)
