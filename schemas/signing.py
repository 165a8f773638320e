"""Adapter updates signed by trainers, checked by nodes (HMAC-SHA256 with a shared key).

Whoever can write to ``adapter-updates`` would otherwise decide what every node serves, and the
sha256 values an update carries only catch corruption, not tampering. A trainer signs each update
it announces with ``MC_ADAPTER_SIGNING_KEY``; a node serves an update only if the signature matches
and its ``uri`` is the one the contract gives that model and version in the configured bucket.

The signature covers the update's canonical JSON (sorted keys, no whitespace, every field but
``signature``), so any change to any field, the file hashes included, breaks it.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from schemas.errors import UntrustedAdapterError
from schemas.events import AdapterUpdate
from schemas.storage import adapter_uri

__all__ = ["sign_update", "signature_of", "verify_update"]


def signature_of(update: AdapterUpdate, key: bytes) -> str:
    body = update.model_dump(mode="json", exclude={"signature"})
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def sign_update(update: AdapterUpdate, key: bytes) -> AdapterUpdate:
    """``update`` with its signature set (a new object: events are frozen)."""
    return update.model_copy(update={"signature": signature_of(update, key)})


def verify_update(update: AdapterUpdate, key: bytes, bucket: str) -> None:
    """Raise :class:`UntrustedAdapterError` unless a trainer holding ``key`` announced ``update``
    and its files are where the contract puts that model's version in ``bucket``."""
    name = f"{update.model_id} v{update.version}"
    if update.signature is None:
        raise UntrustedAdapterError(f"{name}: the update is not signed", reason="unsigned")
    if not hmac.compare_digest(update.signature, signature_of(update, key)):
        raise UntrustedAdapterError(f"{name}: the signature does not match", reason="bad_signature")
    if update.uri is not None and update.uri.rstrip("/") != adapter_uri(bucket, update.model_id, update.version).rstrip(
        "/"
    ):
        raise UntrustedAdapterError(
            f"{name}: uri {update.uri} is outside s3://{bucket}/adapters/{update.model_id}/", reason="foreign_uri"
        )
