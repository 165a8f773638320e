"""The S3 side of the contract: the client every part builds the same way, and the adapter layout.

Adapters are immutable: ``s3://{bucket}/adapters/{model_id}/v{N}/`` holds ``adapter_config.json``,
``adapter_model.safetensors`` and ``manifest.json`` (the AdapterUpdate that announced it, with the
sha256 of each file). A version is never rewritten; rolling back re-announces an older one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from schemas.errors import AdapterError
from schemas.settings import ContractSettings

__all__ = [
    "ADAPTER_FILES",
    "MANIFEST_FILE",
    "adapter_prefix",
    "adapter_uri",
    "ensure_bucket",
    "parse_s3_uri",
    "s3_client",
    "sha256_file",
]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
MANIFEST_FILE = "manifest.json"


def adapter_prefix(model_id: str, version: int) -> str:
    """The key prefix (no bucket, trailing slash) of one adapter version."""
    return f"adapters/{model_id}/v{version}/"


def adapter_uri(bucket: str, model_id: str, version: int) -> str:
    return f"s3://{bucket}/{adapter_prefix(model_id, version)}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> (``bucket``, ``a/b/``)."""
    if not uri.startswith("s3://"):
        raise AdapterError(f"not an s3:// uri: {uri}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket or not prefix:
        raise AdapterError(f"s3 uri without bucket or key prefix: {uri}")
    return bucket, prefix if prefix.endswith("/") else prefix + "/"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, as AdapterUpdate.files records it."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def s3_client(settings: ContractSettings) -> Any:
    """A boto3 S3 client for the configured endpoint (path-style, retries on)."""
    import boto3
    from botocore.config import Config

    access_key, secret_key = settings.s3_credentials()
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"}),
    )


def ensure_bucket(settings: ContractSettings) -> None:
    """Create the configured bucket if it is missing (idempotent)."""
    from botocore.exceptions import ClientError

    client = s3_client(settings)
    try:
        client.head_bucket(Bucket=settings.s3_bucket)
    except ClientError:
        try:
            client.create_bucket(Bucket=settings.s3_bucket)
        except ClientError as exc:  # lost a race with another creator: fine
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
