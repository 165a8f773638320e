"""Download one adapter version from S3 into the node's local cache, every file's sha256 verified.

The download itself (temporary folder, sha256 check, rename into place, reuse of a cached copy whose
hashes still match) is :meth:`schemas.adapter_store.AdapterStore.download`, the one the trainer uses
too; this module only decides where in the cache a version lives.
"""

from __future__ import annotations

from pathlib import Path

from schemas.adapter_store import AdapterStore
from schemas.errors import AdapterError, AdapterVerificationError
from schemas.events import AdapterUpdate

__all__ = ["AdapterVerificationError", "fetch_adapter"]


def fetch_adapter(store: AdapterStore, update: AdapterUpdate, cache_dir: Path) -> Path:
    """The local folder ``{cache_dir}/{model_id}/v{N}`` holding ``update``'s verified files."""
    target = cache_dir / update.model_id / f"v{update.version}"
    # The contract's ModelId is a slug; this keeps a folder the store may replace inside the cache regardless.
    if target.resolve().parent.parent != cache_dir.resolve():
        raise AdapterError(f"refusing model_id {update.model_id!r}: it leaves the adapter cache")
    return store.download(update, target)
