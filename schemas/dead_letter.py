"""The dead-letter envelope: what a worker publishes to ``dead-letters`` instead of an event it refused.

The original key and value travel unchanged (base64), so a fixed record can be re-published as it
was; ``reason`` is a short machine-readable tag (``malformed``, ``invalid``, ``expired_unmatched``,
...), ``error`` the human-readable cause. A dead letter is not an event of the contract (it has no
``model_id``): it is keyed by the original record's key on a single-partition topic.

:func:`dead_letter_bytes` is the one builder every worker uses (the processor, the trainer), so a
letter's bytes do not depend on who wrote it.
"""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import SCHEMA_VERSION, Id, new_id, utcnow

__all__ = ["DeadLetter", "dead_letter_bytes"]


class DeadLetter(BaseModel):
    """One refused (or expired) record, with where it came from and why it was refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    dead_letter_id: Id = Field(default_factory=new_id)
    reason: str = Field(min_length=1, max_length=64, description="machine-readable tag")
    error: str = Field("", max_length=8192, description="human-readable cause")
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    key_b64: str | None = Field(None, description="the original record key, base64; None when it had none")
    value_b64: str | None = Field(None, description="the original record value, base64; None when it had none")
    producer: str = Field("", description="which worker wrote it (app id)")
    created_at: AwareDatetime = Field(default_factory=utcnow)

    @staticmethod
    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode("ascii")

    @property
    def key(self) -> bytes | None:
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)

    @property
    def value(self) -> bytes | None:
        return None if self.value_b64 is None else base64.b64decode(self.value_b64)


def dead_letter_bytes(
    *,
    reason: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    producer: str,
) -> bytes:
    """The bytes to publish on ``dead-letters`` for the record at ``topic[partition]@offset``.

    ``error`` is cut to the envelope's limit instead of failing: a long traceback must not turn a
    dead letter into a second failure.
    """
    letter = DeadLetter(
        reason=reason,
        error=error[:8192],
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        key_b64=DeadLetter.b64(key),
        value_b64=DeadLetter.b64(value),
        producer=producer,
    )
    return letter.model_dump_json().encode()
