"""Dead letters: the worker's error policy (the envelope bytes come from :mod:`schemas.dead_letter`).

Policy (decided per failure, not by a catch-all): a record that is not a valid event of its topic
(:class:`~schemas.errors.SchemaError`), is keyed by something other than its prediction_id, cannot
join (model mismatch), would make an example over the size limit, or expired unmatched goes to
``dead-letters`` and the worker goes on. Anything else (Kafka down, a bug) stops the worker, so the
uncommitted records are processed again by whoever takes the partitions over.
"""

from __future__ import annotations

from schemas.dead_letter import dead_letter_bytes

__all__ = ["dead_letter_bytes"]  # built by the contract (one builder for every worker); kept here for the worker
