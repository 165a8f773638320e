"""The adapters in S3, read and written one way by every part: list, manifest, verified download, upload.

A version exists once its ``manifest.json`` exists: the manifest is written last. Every object of a
version is created with ``If-None-Match: *`` and its sha256 in the object's metadata, so nothing
under ``v{N}/`` is ever replaced: of two writers of one version, the first to create a file owns the
version's files, the other finds a file with another sha256 (:class:`~schemas.errors.VersionTaken`)
and never writes a manifest for them. A retry of our own upload (an answer lost on the way) finds the
same sha256 and goes on. The manifest itself is created only if absent (:meth:`AdapterStore.put_manifest`).

A download writes every file into a temporary sibling folder, checks each against the sha256 the
update announced and renames the folder into place, so a crash never leaves a half-written version
that looks complete; a mismatch raises :class:`~schemas.errors.AdapterVerificationError` and nothing
is kept. A version is immutable, so a folder whose files still match is reused as it is.

Objects beside the adapter files (the trainer's bookkeeping) go through :meth:`AdapterStore.put_new`
and :meth:`AdapterStore.read_checked`: created only if absent, checked against the sha256 in their
metadata when read. The trainer (``trainer.store``), the node (``inference.fetch``), the tests'
and benchmarks' publisher (``inference.adapters``), the gate and the demo all use this class.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from schemas.errors import AdapterError, AdapterVerificationError, StorageError, VersionTaken
from schemas.events import AdapterUpdate
from schemas.serde import decode, encode
from schemas.settings import ContractSettings
from schemas.storage import ADAPTER_FILES, MANIFEST_FILE, adapter_prefix, adapter_uri, s3_client, sha256_file

__all__ = ["AdapterStore", "adapter_files"]

_PRECONDITION = ("PreconditionFailed", "412")
_MISSING = ("NoSuchKey", "404", "NotFound")


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def adapter_files(update: AdapterUpdate) -> dict[str, str]:
    """The files (name -> sha256) a node must download for ``update``; raises :class:`AdapterError`
    when the update names no location, lacks a file every adapter has, or names a file that is not a
    plain name (it would land outside the version's folder)."""
    name = f"{update.model_id} v{update.version}"
    if update.uri is None or not update.files:
        raise AdapterError(f"{name}: no uri or files to fetch")
    missing = [f for f in ADAPTER_FILES if f not in update.files]
    if missing:
        raise AdapterError(f"{name}: the update lists no {', '.join(missing)}")
    for file in update.files:
        if "/" in file or "\\" in file or file in ("", ".", ".."):
            raise AdapterError(f"{name}: refusing file name {file!r}")
    return dict(update.files)


def _verified(folder: Path, files: Mapping[str, str]) -> bool:
    return all((folder / name).is_file() and sha256_file(folder / name) == sha for name, sha in files.items())


class AdapterStore:
    """The adapter versions in the configured bucket (``adapters/{model_id}/v{N}/``)."""

    def __init__(self, settings: ContractSettings, *, client: Any = None) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.client = client or s3_client(settings)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            raise StorageError(f"{what}: {_code(exc)} {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{what}: {exc}") from exc

    def uri(self, model_id: str, version: int) -> str:
        return adapter_uri(self.bucket, model_id, version)

    # -- reading ----------------------------------------------------------------------------------

    def versions(self, model_id: str) -> list[int]:
        """Versions of ``model_id`` that have a manifest, ascending."""
        pattern = re.compile(rf"^adapters/{re.escape(model_id)}/v(\d+)/{re.escape(MANIFEST_FILE)}$")
        found: list[int] = []
        token: dict[str, str] = {}
        while True:
            page = self._call(
                f"listing {model_id}", self.client.list_objects_v2, Prefix=f"adapters/{model_id}/", **token
            )
            for obj in page.get("Contents", []):
                match = pattern.match(obj["Key"])
                if match:
                    found.append(int(match.group(1)))
            if not page.get("IsTruncated"):
                return sorted(found)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _get_or_none(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        """The object's bytes and metadata; None when it does not exist (any other failure raises)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
            data: bytes = obj["Body"].read()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise StorageError(f"reading {key}: {_code(exc)} {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading {key}: {exc}") from exc
        return data, dict(obj.get("Metadata") or {})

    def manifest_or_none(self, model_id: str, version: int) -> AdapterUpdate | None:
        found = self._get_or_none(adapter_prefix(model_id, version) + MANIFEST_FILE)
        return None if found is None else decode(found[0], AdapterUpdate)

    def manifest(self, model_id: str, version: int) -> AdapterUpdate:
        """The version's AdapterUpdate as its writer stored it.

        A missing manifest is a :class:`StorageError` here (a version just listed that cannot be read
        is the store failing us, retried as such); ask :meth:`manifest_or_none` when absence is an answer.
        """
        key = adapter_prefix(model_id, version) + MANIFEST_FILE
        body = self._call(f"reading {key}", self.client.get_object, Key=key)["Body"].read()
        return decode(body, AdapterUpdate)

    def wait_for_manifest(self, model_id: str, version: int, timeout_s: float) -> AdapterUpdate | None:
        """The version's manifest, waiting up to ``timeout_s`` for a writer that is uploading it."""
        deadline = time.monotonic() + timeout_s
        while (found := self.manifest_or_none(model_id, version)) is None and time.monotonic() < deadline:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return found

    def read(self, model_id: str, version: int, name: str) -> bytes | None:
        """An object of the version as it is (no check); None when it does not exist."""
        found = self._get_or_none(adapter_prefix(model_id, version) + name)
        return None if found is None else found[0]

    def read_checked(self, model_id: str, version: int, name: str) -> bytes | None:
        """An object written by :meth:`put_new`, checked against the sha256 in its metadata; None when
        it does not exist. :class:`AdapterVerificationError` when it has no sha256 or another one."""
        key = adapter_prefix(model_id, version) + name
        found = self._get_or_none(key)
        if found is None:
            return None
        data, meta = found
        want = meta.get("sha256")
        if want is None or hashlib.sha256(data).hexdigest() != want:
            raise AdapterVerificationError(f"{key} does not match the sha256 of its metadata ({want})")
        return data

    def download(self, update: AdapterUpdate, folder: Path) -> Path:
        """``update``'s files into ``folder`` (replaced as a whole), each checked against its sha256."""
        files = adapter_files(update)
        expected = self.uri(update.model_id, update.version)
        if update.uri is None or update.uri.rstrip("/") != expected.rstrip("/"):
            raise AdapterError(f"{update.model_id} v{update.version}: {update.uri} is not {expected}")
        if folder.is_dir() and _verified(folder, files):
            return folder
        prefix = adapter_prefix(update.model_id, update.version)
        tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.partial")
        tmp.mkdir(parents=True)
        try:
            for name, want in files.items():
                try:
                    self.client.download_file(self.bucket, prefix + name, str(tmp / name))
                except Exception as exc:  # botocore and s3transfer raise many types; all mean "the store failed us"
                    raise StorageError(f"cannot download s3://{self.bucket}/{prefix}{name}: {exc}") from None
                got = sha256_file(tmp / name)
                if got != want:
                    raise AdapterVerificationError(
                        f"{update.model_id} v{update.version}: sha256 of {name} is {got}, announced {want}"
                    )
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    # -- writing ----------------------------------------------------------------------------------

    def put_new(self, model_id: str, version: int, name: str, body: bytes) -> str:
        """Create the version's object ``name`` (never replace it); its sha256.

        Raises :class:`VersionTaken` when it exists with other bytes; succeeds when it exists with the
        same bytes (a retry of our own upload)."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = adapter_prefix(model_id, version) + name
        digest = hashlib.sha256(body).hexdigest()
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", Metadata={"sha256": digest})
            return digest
        except ClientError as exc:
            if _code(exc) not in _PRECONDITION:  # 409 ConditionalRequestConflict: a put in flight, retried
                raise StorageError(f"writing {key}: {_code(exc)} {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"writing {key}: {exc}") from exc
        head = self._call(f"reading {key}", self.client.head_object, Key=key)
        if head.get("Metadata", {}).get("sha256") != digest:
            raise VersionTaken(f"{key} exists with other bytes: another writer's")
        return digest

    def upload(
        self, model_id: str, version: int, folder: Path, *, extra: Mapping[str, bytes] | None = None
    ) -> dict[str, str]:
        """Create the adapter files of ``folder`` (then ``extra``'s objects) under v{version}, each only
        if absent; the sha256 of each adapter file, as the manifest records them."""
        digests: dict[str, str] = {}
        for name in ADAPTER_FILES:
            path = folder / name
            if not path.exists():
                raise AdapterError(f"the adapter in {folder} has no {name}")
            digests[name] = self.put_new(model_id, version, name, path.read_bytes())
        for name, body in (extra or {}).items():
            self.put_new(model_id, version, name, body)
        return digests

    def put_manifest(self, update: AdapterUpdate) -> bool:
        """Create the version's manifest; False when the version already has one (nothing written)."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = adapter_prefix(update.model_id, update.version) + MANIFEST_FILE
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=encode(update), IfNoneMatch="*", ContentType="application/json"
            )
        except ClientError as exc:
            if _code(exc) in _PRECONDITION:
                return False
            raise StorageError(f"writing {key}: {_code(exc)} {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"writing {key}: {exc}") from exc
        return True

    def delete_model(self, model_id: str) -> None:
        """Remove every stored object of ``model_id`` (benchmark and test clean-up; versions are
        otherwise never deleted)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"adapters/{model_id}/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                self._call(f"deleting {obj['Key']}", self.client.delete_object, Key=obj["Key"])
