"""The adapters in S3: list versions, read manifests, download (verified), upload (never overwriting).

A version exists once its ``manifest.json`` exists: the manifest is written last. Every object of
a version is written with ``If-None-Match: *`` and its sha256 in the object's metadata, so nothing
under ``v{N}/`` is ever replaced: of two writers of one version, the first to create a file owns the
version's files, the other finds a file with another sha256 (:class:`VersionTaken`) and never
writes a manifest for them. A retry of our own upload (an answer lost on the way) finds the same
sha256 and goes on. Files of an attempt that crashed before its manifest stay as debris; the
version number is then given up (:mod:`trainer.publish`).

``examples.json`` (the trainer's own bookkeeping, not an adapter file) lists the example ids the
version was trained on; the set of example ids a model was trained on is the union over its
versions, which is how that set survives a SIGKILL. ``optimizer.safetensors`` (bookkeeping too, so
not in the manifest's files, which every node downloads) holds AdamW's moments after the version;
its sha256 travels as the object's metadata and is checked on download. A version without it (or
with a damaged one) continues with a fresh optimizer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from schemas.errors import AdapterError, StorageError
from schemas.events import AdapterUpdate
from schemas.serde import decode, encode
from schemas.settings import ContractSettings
from schemas.storage import ADAPTER_FILES, MANIFEST_FILE, adapter_prefix, adapter_uri, s3_client, sha256_file
from trainer.model import OPTIMIZER_FILE

__all__ = ["EXAMPLES_FILE", "AdapterStore", "VersionTaken"]

EXAMPLES_FILE = "examples.json"

_log = logging.getLogger(__name__)


_PRECONDITION = ("PreconditionFailed", "412")


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class VersionTaken(AdapterError):
    """A file of the version exists with other bytes: another writer's (alive, or crashed) files."""


class AdapterStore:
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

    def _get(self, key: str) -> bytes:
        body = self._call(f"reading {key}", self.client.get_object, Key=key)["Body"]
        data: bytes = body.read()
        return data

    def manifest(self, model_id: str, version: int) -> AdapterUpdate:
        return decode(self._get(adapter_prefix(model_id, version) + MANIFEST_FILE), AdapterUpdate)

    def _get_or_none(self, key: str) -> bytes | None:
        """The object's bytes; None when it does not exist (any other failure raises)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise StorageError(f"reading {key}: {_code(exc)} {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading {key}: {exc}") from exc
        return data

    def manifest_or_none(self, model_id: str, version: int) -> AdapterUpdate | None:
        data = self._get_or_none(adapter_prefix(model_id, version) + MANIFEST_FILE)
        return None if data is None else decode(data, AdapterUpdate)

    def wait_for_manifest(self, model_id: str, version: int, timeout_s: float) -> AdapterUpdate | None:
        """The version's manifest, waiting up to ``timeout_s`` for a writer that is uploading it."""
        deadline = time.monotonic() + timeout_s
        while (found := self.manifest_or_none(model_id, version)) is None and time.monotonic() < deadline:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return found

    def example_ids(self, model_id: str, version: int) -> list[str]:
        data = self._get_or_none(adapter_prefix(model_id, version) + EXAMPLES_FILE)
        if data is None:
            return []  # written by something else than this trainer (a hand-made adapter)
        return [str(i) for i in json.loads(data)]

    def download(self, update: AdapterUpdate, folder: Path) -> Path:
        """The version's adapter files into ``folder``, each checked against the manifest's sha256."""
        folder.mkdir(parents=True, exist_ok=True)
        prefix = adapter_prefix(update.model_id, update.version)
        for name in ADAPTER_FILES:
            want = update.files.get(name)
            if want is None:
                raise AdapterError(f"{update.model_id} v{update.version}: the manifest names no {name}")
            path = folder / name
            if path.exists() and sha256_file(path) == want:
                continue
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(self._get(prefix + name))
            if sha256_file(tmp) != want:
                tmp.unlink()
                raise AdapterError(f"{update.model_id} v{update.version}: {name} does not match its sha256")
            tmp.replace(path)
        self._download_optimizer(prefix, folder / OPTIMIZER_FILE)
        return folder

    def _download_optimizer(self, prefix: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        path.unlink(missing_ok=True)  # never continue with the moments of another version
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=prefix + OPTIMIZER_FILE)
            data, want = obj["Body"].read(), obj.get("Metadata", {}).get("sha256")
        except (ClientError, BotoCoreError) as exc:
            _log.info("%s%s not readable (%s): a fresh optimizer", prefix, OPTIMIZER_FILE, _code(exc) or exc)
            return
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        if want is None or sha256_file(tmp) != want:
            tmp.unlink()
            _log.warning("%s%s does not match its sha256: a fresh optimizer", prefix, OPTIMIZER_FILE)
            return
        tmp.replace(path)

    # -- writing ----------------------------------------------------------------------------------

    def _put_new(self, key: str, body: bytes) -> str:
        """Create ``key`` (never replace it); its sha256. Raises :class:`VersionTaken` when it exists
        with other bytes; succeeds when it exists with the same bytes (a retry of our own upload)."""
        from botocore.exceptions import BotoCoreError, ClientError

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

    def upload_files(self, model_id: str, version: int, folder: Path, example_ids: list[str]) -> dict[str, str]:
        """Upload the adapter files, the optimizer state and the example ids, each only if absent;
        the sha256 of each adapter file."""
        prefix = adapter_prefix(model_id, version)
        digests: dict[str, str] = {}
        for name in ADAPTER_FILES:
            path = folder / name
            if not path.exists():
                raise AdapterError(f"saving the adapter produced no {name}")
            digests[name] = self._put_new(prefix + name, path.read_bytes())
        state = folder / OPTIMIZER_FILE
        if state.exists():
            self._put_new(prefix + OPTIMIZER_FILE, state.read_bytes())
        self._put_new(prefix + EXAMPLES_FILE, json.dumps(example_ids).encode())
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
