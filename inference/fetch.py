"""Download one adapter version from S3 into the local cache and verify every file's sha256.

A version is immutable, so a cached copy whose hashes still match is reused. Files are written into
a temporary folder and renamed into place, so a crash never leaves a half-written version that
looks complete. A hash mismatch raises :class:`AdapterVerificationError` and nothing is kept.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from schemas.errors import AdapterError, StorageError
from schemas.events import AdapterUpdate
from schemas.storage import ADAPTER_FILES, parse_s3_uri, sha256_file

__all__ = ["AdapterVerificationError", "fetch_adapter"]


class AdapterVerificationError(AdapterError):
    """A downloaded file's sha256 differs from the one the AdapterUpdate announced."""


def _verified(folder: Path, files: dict[str, str]) -> bool:
    return all((folder / name).is_file() and sha256_file(folder / name) == sha for name, sha in files.items())


def fetch_adapter(s3: Any, update: AdapterUpdate, cache_dir: Path) -> Path:
    """The local folder holding ``update``'s files, each verified against its announced sha256."""
    if update.uri is None or not update.files:
        raise AdapterError(f"{update.model_id} v{update.version}: no uri or files to fetch")
    missing = [name for name in ADAPTER_FILES if name not in update.files]
    if missing:
        raise AdapterError(f"{update.model_id} v{update.version}: the update lists no {', '.join(missing)}")
    for name in update.files:
        if "/" in name or name in ("", ".", ".."):
            raise AdapterError(f"{update.model_id} v{update.version}: refusing file name {name!r}")
    bucket, prefix = parse_s3_uri(update.uri)
    target = cache_dir / update.model_id / f"v{update.version}"
    # The contract's ModelId is a slug; this keeps a folder we may rmtree inside the cache regardless.
    if target.resolve().parent.parent != cache_dir.resolve():
        raise AdapterError(f"refusing model_id {update.model_id!r}: it leaves the adapter cache")
    if target.is_dir() and _verified(target, update.files):
        return target
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    tmp.mkdir(parents=True)
    try:
        for name, expected in update.files.items():
            try:
                s3.download_file(bucket, prefix + name, str(tmp / name))
            except Exception as exc:  # botocore raises many types; all mean "the store failed us"
                raise StorageError(f"cannot download s3://{bucket}/{prefix}{name}: {exc}") from None
            actual = sha256_file(tmp / name)
            if actual != expected:
                raise AdapterVerificationError(
                    f"{update.model_id} v{update.version}: sha256 of {name} is {actual}, announced {expected}"
                )
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
