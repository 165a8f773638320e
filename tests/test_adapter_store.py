"""The one adapter store (schemas.adapter_store): pure checks, then the real S3-compatible server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from schemas.adapter_store import AdapterStore, adapter_files
from schemas.errors import AdapterError, AdapterVerificationError, StorageError, VersionTaken
from schemas.events import AdapterUpdate
from schemas.settings import ContractSettings
from schemas.storage import ADAPTER_FILES, MANIFEST_FILE, adapter_prefix, adapter_uri


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _update(bucket: str, model_id: str, version: int, files: dict[str, str], **kw: object) -> AdapterUpdate:
    return AdapterUpdate(
        model_id=model_id,
        version=version,
        uri=adapter_uri(bucket, model_id, version),
        files=files,
        base_model="base",
        **kw,
    )


def _adapter(folder: Path, seed: int) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {
        "adapter_config.json": json.dumps({"r": 8, "seed": seed}).encode(),
        "adapter_model.safetensors": bytes([seed]) * 4096,
    }
    for name, data in blobs.items():
        (folder / name).write_bytes(data)
    return blobs


# -- pure -----------------------------------------------------------------------------------------


def test_adapter_files_refuses_what_cannot_be_downloaded_safely() -> None:
    good = {name: "0" * 64 for name in ADAPTER_FILES}
    assert adapter_files(_update("b", "m", 1, good)) == good
    with pytest.raises(AdapterError, match="no uri"):  # v0, the base model: nothing to download
        adapter_files(AdapterUpdate(model_id="m", version=0, base_model="base"))
    with pytest.raises(AdapterError, match=r"lists no adapter_model\.safetensors"):
        adapter_files(_update("b", "m", 1, {"adapter_config.json": "0" * 64}))
    for bad in ("../x", "a/b", "..", "a\\b"):
        with pytest.raises(AdapterError, match="refusing file name"):
            adapter_files(_update("b", "m", 1, {**good, bad: "0" * 64}))


def test_download_refuses_a_uri_that_is_not_the_versions_own(tmp_path: Path) -> None:
    store = AdapterStore(ContractSettings(s3_bucket="mine"), client=object())  # no call reaches the client
    update = _update("elsewhere", "m", 1, {name: "0" * 64 for name in ADAPTER_FILES})
    with pytest.raises(AdapterError, match="is not s3://mine/adapters/m/v1/"):
        store.download(update, tmp_path / "v1")
    assert not (tmp_path / "v1").exists()


# -- the real server ------------------------------------------------------------------------------


@pytest.fixture
def store(s3, bucket) -> AdapterStore:
    return AdapterStore(ContractSettings(s3_bucket=bucket))


@pytest.mark.s3
def test_upload_manifest_list_and_verified_download(store: AdapterStore, tmp_path: Path) -> None:
    blobs = _adapter(tmp_path / "src", 1)
    digests = store.upload("m1", 1, tmp_path / "src", extra={"examples.json": b'["e1"]'})
    assert digests == {name: _sha(data) for name, data in blobs.items()}
    assert store.versions("m1") == [] and store.manifest_or_none("m1", 1) is None  # no manifest yet
    update = _update(store.bucket, "m1", 1, digests)
    assert store.put_manifest(update) is True
    assert store.put_manifest(update.model_copy(update={"parent_version": 7})) is False  # never rewritten
    assert store.manifest("m1", 1) == update and store.versions("m1") == [1]
    assert store.read("m1", 1, "examples.json") == b'["e1"]' and store.read("m1", 1, "nope") is None
    assert store.read_checked("m1", 1, "examples.json") == b'["e1"]'

    got = store.download(update, tmp_path / "cache" / "m1" / "v1")
    assert {p.name: p.read_bytes() for p in got.iterdir()} == blobs
    mtimes = {p.name: p.stat().st_mtime_ns for p in got.iterdir()}
    assert store.download(update, got) == got  # verified copy reused, not fetched again
    assert {p.name: p.stat().st_mtime_ns for p in got.iterdir()} == mtimes
    (got / "adapter_model.safetensors").write_bytes(b"damaged")
    store.download(update, got)  # a damaged copy is replaced as a whole
    assert (got / "adapter_model.safetensors").read_bytes() == blobs["adapter_model.safetensors"]
    assert sorted(p.name for p in got.parent.iterdir()) == ["v1"]  # no temporary folder left


@pytest.mark.s3
def test_a_second_writer_of_a_version_finds_it_taken(store: AdapterStore, tmp_path: Path) -> None:
    _adapter(tmp_path / "a", 1)
    _adapter(tmp_path / "b", 2)
    first = store.upload("m1", 1, tmp_path / "a")
    assert store.upload("m1", 1, tmp_path / "a") == first  # a retry of our own upload goes on
    with pytest.raises(VersionTaken):
        store.upload("m1", 1, tmp_path / "b")
    key = adapter_prefix("m1", 1) + "adapter_model.safetensors"
    assert store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read() == bytes([1]) * 4096


@pytest.mark.s3
def test_a_wrong_sha256_keeps_nothing(store: AdapterStore, tmp_path: Path) -> None:
    _adapter(tmp_path / "src", 3)
    digests = store.upload("m1", 1, tmp_path / "src")
    bad = _update(store.bucket, "m1", 1, {**digests, "adapter_model.safetensors": "0" * 64})
    target = tmp_path / "cache" / "v1"
    with pytest.raises(AdapterVerificationError, match=r"sha256 of adapter_model\.safetensors"):
        store.download(bad, target)
    assert not target.exists() and list((tmp_path / "cache").iterdir()) == []
    missing = _update(store.bucket, "m1", 2, digests)  # never uploaded
    with pytest.raises(StorageError, match="cannot download"):
        store.download(missing, target)
    with pytest.raises(StorageError):
        store.manifest("m1", 2)


@pytest.mark.s3
def test_read_checked_refuses_bytes_that_do_not_match_their_metadata(store: AdapterStore) -> None:
    key = adapter_prefix("m1", 1) + "optimizer.safetensors"
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b"x", Metadata={"sha256": _sha(b"y")})
    with pytest.raises(AdapterVerificationError):
        store.read_checked("m1", 1, "optimizer.safetensors")
    store.client.put_object(Bucket=store.bucket, Key=adapter_prefix("m1", 1) + "plain", Body=b"x")
    with pytest.raises(AdapterVerificationError):  # no sha256 at all: not written by put_new
        store.read_checked("m1", 1, "plain")
    assert store.read_checked("m1", 1, "absent") is None


@pytest.mark.s3
def test_delete_model_removes_every_version(store: AdapterStore, tmp_path: Path) -> None:
    _adapter(tmp_path / "src", 1)
    for v in (1, 2):
        store.put_manifest(_update(store.bucket, "m1", v, store.upload("m1", v, tmp_path / "src")))
    store.upload("m2", 1, tmp_path / "src")
    store.delete_model("m1")
    assert store.versions("m1") == []
    assert store.read("m2", 1, "adapter_config.json") is not None
    assert store.read("m1", 1, MANIFEST_FILE) is None
