"""The real S3-compatible server (MinIO) through the client every part uses."""

from __future__ import annotations

import hashlib
import os

import pytest

from schemas.storage import adapter_prefix, adapter_uri, s3_client

pytestmark = [pytest.mark.s3]


def test_put_get_list_on_the_real_server(s3, bucket) -> None:
    client = s3_client(s3)
    blobs = {f"{adapter_prefix('m1', v)}adapter_model.safetensors": os.urandom(256 * 1024 + v) for v in (1, 2, 3)}
    for key, data in blobs.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    for key, data in blobs.items():
        got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    listed = client.list_objects_v2(Bucket=bucket, Prefix="adapters/m1/")
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(blobs)
    versions = client.list_objects_v2(Bucket=bucket, Prefix="adapters/m1/", Delimiter="/")["CommonPrefixes"]
    assert [p["Prefix"] for p in versions] == [adapter_prefix("m1", v) for v in (1, 2, 3)]
    assert adapter_uri(bucket, "m1", 2) == f"s3://{bucket}/adapters/m1/v2/"


def test_missing_object_is_a_client_error(s3, bucket) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        s3_client(s3).get_object(Bucket=bucket, Key="nope")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"


def test_conditional_put_refuses_to_overwrite(s3, bucket) -> None:
    """Adapters are immutable: If-None-Match makes a second writer of one version fail, not overwrite."""
    from botocore.exceptions import ClientError

    client = s3_client(s3)
    client.put_object(Bucket=bucket, Key="adapters/m/v1/manifest.json", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=bucket, Key="adapters/m/v1/manifest.json", Body=b"second", IfNoneMatch="*")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] in (409, 412)
    assert client.get_object(Bucket=bucket, Key="adapters/m/v1/manifest.json")["Body"].read() == b"first"
