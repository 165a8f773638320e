"""Dead letters: the envelope bytes for a refused record, and the worker's error policy.

Policy (decided per failure, not by a catch-all): a record that is not a valid event of its topic
(:class:`~schemas.errors.SchemaError`), is keyed by something other than its prediction_id, cannot
join (model mismatch), would make an example over the size limit, or expired unmatched goes to
``dead-letters`` and the worker goes on. Anything else (Kafka down, a bug) stops the worker, so the
uncommitted records are processed again by whoever takes the partitions over.
"""

from __future__ import annotations

from schemas.dead_letter import DeadLetter

__all__ = ["dead_letter_bytes"]


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
